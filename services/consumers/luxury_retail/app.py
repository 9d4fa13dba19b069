"""The luxury-retail consumer service: `uvicorn services.consumers.luxury_retail.app:app` (`:stream` for `faststream run`)."""

from services.consumers.app import create_app
from services.consumers.luxury_retail.policy import POLICY
from services.kit.stream import as_faststream

app = create_app(POLICY)
stream = as_faststream(app)
