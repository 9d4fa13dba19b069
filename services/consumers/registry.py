"""Every consumer's policy by name: adding a consumer is a policy and one line here."""

from services.consumers.admissions.policy import POLICY as ADMISSIONS
from services.consumers.airline.policy import POLICY as AIRLINE
from services.consumers.luxury_retail.policy import POLICY as LUXURY_RETAIL
from services.consumers.policy import ConsumerPolicy
from services.consumers.ticketing.policy import POLICY as TICKETING

POLICIES: dict[str, ConsumerPolicy] = {p.name: p for p in (AIRLINE, TICKETING, LUXURY_RETAIL, ADMISSIONS)}
