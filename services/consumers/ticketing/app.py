"""The ticketing consumer service: `uvicorn services.consumers.ticketing.app:app`."""

from services.consumers.app import create_app
from services.consumers.ticketing.policy import POLICY

app = create_app(POLICY)
