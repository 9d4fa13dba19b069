"""The airline consumer service: `uvicorn services.consumers.airline.app:app`."""

from services.consumers.airline.policy import POLICY
from services.consumers.app import create_app

app = create_app(POLICY)
