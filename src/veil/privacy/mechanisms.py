"""What runs at the split besides the noise (issue 17): the public surface of
`veil.privacy._mechanisms` (weights files, the bottleneck) and `veil.privacy._adversarial`
(training against an adversary). docs/privacy.md, "Mechanisms"."""

from veil.privacy._adversarial import AdversarialConfig, Adversaries, train_adversarial
from veil.privacy._mechanisms import (
    FORMAT,
    MAX_MECHANISM_BYTES,
    MECHANISMS,
    assemble,
    check_mechanism,
    load,
    save,
    with_bottleneck,
)

__all__ = ["FORMAT", "MAX_MECHANISM_BYTES", "MECHANISMS", "AdversarialConfig", "Adversaries",
           "assemble", "check_mechanism", "load", "save", "train_adversarial",
           "with_bottleneck"]
