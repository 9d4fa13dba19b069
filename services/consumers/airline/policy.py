"""Airline: refuses boarding to anyone under a FLIGHT restriction."""

from schemas.catalogue import Restriction
from services.consumers.policy import Action, ConsumerPolicy

POLICY = ConsumerPolicy(
    name="airline",
    port=8101,
    actions={"board_flight": Action("board_flight", checks=frozenset({Restriction.FLIGHT}))},
)
