"""The admissions consumer service: `uvicorn services.consumers.admissions.app:app`."""

from services.consumers.admissions.policy import POLICY
from services.consumers.app import create_app

app = create_app(POLICY)
