"""The ticketing consumer service: `uvicorn services.consumers.ticketing.app:app` (`:stream` for `faststream run`)."""

from services.consumers.app import create_app
from services.consumers.ticketing.policy import POLICY
from services.kit.stream import as_faststream

app = create_app(POLICY)
stream = as_faststream(app)
