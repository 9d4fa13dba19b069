"""The court publisher service: `uvicorn services.publishers.court.app:app`."""

from services.publishers.app import create_app
from services.publishers.court.rules import rules_for

app = create_app("court", rules_for)
