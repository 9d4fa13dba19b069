"""The luxury-retail consumer service: `uvicorn services.consumers.luxury_retail.app:app`."""

from services.consumers.app import create_app
from services.consumers.luxury_retail.policy import POLICY

app = create_app(POLICY)
