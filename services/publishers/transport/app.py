"""The transport publisher service: `uvicorn services.publishers.transport.app:app` (`:stream` for `faststream run`)."""

from services.kit.stream import as_faststream
from services.publishers.app import create_app
from services.publishers.transport.rules import rules_for

app = create_app("transport", rules_for)
stream = as_faststream(app)
