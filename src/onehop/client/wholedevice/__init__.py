"""Whole-device tunnelling on Linux (``onehop client --whole-device``).

Boundary: the only code that changes the machine's packet rules. ``rules`` writes one
nftables table of onehop's own (and the policy route TPROXY needs) and nothing else;
``transparent`` and ``udp_relay`` carry what the rules catch through the controller's
tunnel; ``service.WholeDevice`` ties them to one client run. The controller only sees
``WholeDevice`` (as ``controller.whole_device``) and its ``state``.
"""

from .service import WholeDevice, WholeDeviceState, cleanup

__all__ = ["WholeDevice", "WholeDeviceState", "cleanup"]
