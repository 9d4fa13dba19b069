"""The city-pilot publisher service: `uvicorn services.publishers.city_pilot.app:app` (`:stream` for `faststream run`)."""

from services.kit.stream import as_faststream
from services.publishers.app import create_app
from services.publishers.city_pilot.rules import rules_for

app = create_app("city", rules_for)
stream = as_faststream(app)
