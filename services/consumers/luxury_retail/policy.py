"""Luxury retailer: refuses luxury sales under LUXURY_GOODS, national or in the region of the sale."""

from schemas.catalogue import Restriction
from services.consumers.policy import Action, ConsumerPolicy

POLICY = ConsumerPolicy(
    name="luxury-retail",
    port=8103,
    actions={"buy_luxury_goods": Action("buy_luxury_goods", checks=frozenset({Restriction.LUXURY_GOODS}))},
)
