"""Ticket seller: flight tickets check FLIGHT; rail tickets check RAIL, premium seats RAIL_PREMIUM too."""

from schemas.catalogue import Restriction
from services.consumers.policy import Action, ConsumerPolicy

_STANDARD = frozenset({Restriction.RAIL})
_PREMIUM = frozenset({Restriction.RAIL, Restriction.RAIL_PREMIUM})

POLICY = ConsumerPolicy(
    name="ticketing",
    port=8102,
    actions={
        "buy_flight_ticket": Action("buy_flight_ticket", checks=frozenset({Restriction.FLIGHT})),
        "buy_rail_ticket": Action(
            "buy_rail_ticket",
            by_seat_class={
                "second": _STANDARD,
                "hard_seat": _STANDARD,
                "hard_sleeper": _STANDARD,
                "first": _PREMIUM,
                "business": _PREMIUM,
                "soft_sleeper": _PREMIUM,
            },
        ),
    },
)
