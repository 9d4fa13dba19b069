"""University admissions: checks the person who pays private tuition, never the applicant."""

from schemas.catalogue import Restriction
from services.consumers.policy import Action, ConsumerPolicy

POLICY = ConsumerPolicy(
    name="admissions",
    port=8104,
    actions={"pay_private_tuition": Action("pay_private_tuition", checks=frozenset({Restriction.PRIVATE_SCHOOL_TUITION}))},
    payer_only=True,
)
