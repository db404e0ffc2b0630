"""Tailscale bootstrap for a launched node: join the tailnet on start, log out on teardown.

The auth key is an ephemeral, pre-authorized, tagged key. It travels only as a SkyPilot *secret*
(``secrets: {TS_AUTHKEY: null}`` in the task; the value is attached to the Task object at launch
and redacted by SkyPilot), is fed to ``tailscale up`` on stdin and unset right after, so it is never
in the task's ``envs``, the rendered YAML, a manifest, a log line or a file. The node's tailnet IPv4
is exported as ``NEXA_TAILSCALE_IP``, which every run started there records in its manifest.
"""

from __future__ import annotations

import os
import re

from nexa.infra.launch import LaunchRefused

AUTH_KEY_SECRET = "TS_AUTHKEY"
DEFAULT_TAG = "tag:nexa"
_TAG = re.compile(r"^tag:[a-z0-9][a-z0-9-]*$")

INSTALL = "command -v tailscale >/dev/null || curl -fsSL https://tailscale.com/install.sh | sh"


def join_script(hostname: str, tag: str = DEFAULT_TAG) -> str:
    """Shell lines that start an in-memory (ephemeral) tailscaled, join with the key on stdin, export the IP."""
    if not _TAG.match(tag):
        raise ValueError(f"tailscale tag {tag!r} must look like tag:name (lowercase letters, digits, dashes)")
    return "\n".join([
        "sudo tailscaled --state=mem: --socket=/var/run/tailscale/tailscaled.sock >/dev/null 2>&1 &",
        "sleep 2",
        f'printf "%s" "${AUTH_KEY_SECRET}" | sudo tailscale up --auth-key=file:/dev/stdin '
        f"--hostname={hostname} --advertise-tags={tag} --accept-dns=false",
        f"unset {AUTH_KEY_SECRET}",
        "export NEXA_TAILSCALE_IP=$(tailscale ip -4 | head -n1)",
        "trap 'sudo tailscale logout' EXIT",
    ])


LOGOUT = "sudo tailscale logout || true"


def auth_key_from_env() -> str:
    """The key from the launcher's environment; its absence is the user's to fix (exit 2, nothing launched)."""
    key = os.environ.get(AUTH_KEY_SECRET, "")
    if not key:
        raise LaunchRefused(f"--tailscale needs an ephemeral, pre-authorized, tagged auth key in ${AUTH_KEY_SECRET} "
                          "(Tailscale admin console > Settings > Keys); nothing was launched")
    if not key.startswith("tskey-"):
        raise LaunchRefused(f"${AUTH_KEY_SECRET} does not look like a Tailscale auth key (tskey-...); nothing was launched")
    return key
