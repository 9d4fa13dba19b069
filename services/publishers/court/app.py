"""The court publisher service with its public register page: `uvicorn services.publishers.court.app:app` (or `:stream`)."""

from services.kit.stream import as_faststream
from services.publishers.app import create_app
from services.publishers.court import register
from services.publishers.court.rules import rules_for

app = create_app("court", rules_for)
app.include_router(register.router)  # public: the law makes this list public, so no token
stream = as_faststream(app)
