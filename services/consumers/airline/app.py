"""The airline consumer service: `uvicorn services.consumers.airline.app:app` (`:stream` for `faststream run`)."""

from services.consumers.airline.policy import POLICY
from services.consumers.app import create_app
from services.kit.stream import as_faststream

app = create_app(POLICY)
stream = as_faststream(app)
