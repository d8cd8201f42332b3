"""Version information (the keras-spiking 0.3 module layout).

``version`` follows semantic versioning and PEP 440; ``dev`` is the
development release number (None for a release).
"""

#: The release as numbers: (major, minor, patch).
version_info = (0, 4, 0)
#: Development release number, or None for a release.
dev = None
name = "keras-spiking"

version = ".".join(str(part) for part in version_info)
if dev is not None:
    version += f".dev{dev}"

copyright = "Copyright (c) 2026 the keras-spiking authors"
