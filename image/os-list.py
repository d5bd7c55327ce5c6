"""Write a Raspberry Pi Imager custom repository file (os-list.json) for the built image.

Open it in Imager with `rpi-imager --repo build/os-list.json` (or Imager's "Use custom" repository
setting). The entry has no `init_format`: Imager's OS customisation (user, Wi-Fi, SSH) writes files
this image does not read; the appliance reads `appliance.toml` on the boot partition instead.
"""

# A build tool that prints what it wrote.
# ruff: noqa: T201
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

CHUNK: Final = 1 << 20
# The boards behind each Imager device tag, named in the entry's description.
BOARDS: Final = {"pi3-64bit": "3 B, 3 B+, Zero 2 W", "pi4-64bit": "4 B, 400", "pi5-64bit": "5"}
DESCRIPTION: Final = (
    "Workshop appliance: BLE presence beacons, 3D-printer timelapse relay and a live dashboard. "
    "Edit appliance.toml on the boot partition before the first boot."
)


def sha256_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def entry(image: Path, xz: Path, *, base_url: str, devices: list[str], release: str,
          name: str, icon: str, website: str) -> dict[str, object]:
    extract_sha256, extract_size = sha256_and_size(image)
    download_sha256, download_size = sha256_and_size(xz)
    url = f"{base_url.rstrip('/')}/{xz.name}" if base_url else xz.resolve().as_uri()
    return {
        "name": name,
        "description": f"{DESCRIPTION} For Raspberry Pi {'; '.join(BOARDS.get(d, d) for d in devices)}. "
                       f"Build {release}.",
        "icon": icon,
        "website": website,
        "url": url,
        "extract_size": extract_size,
        "extract_sha256": extract_sha256,
        "image_download_size": download_size,
        "image_download_sha256": download_sha256,
        "release_date": datetime.fromtimestamp(xz.stat().st_mtime, tz=UTC).date().isoformat(),
        "devices": devices,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, required=True, help="the uncompressed .img")
    parser.add_argument("--xz", type=Path, required=True, help="the .img.xz Imager downloads")
    parser.add_argument("--base-url", default="", help="where the .xz is served (default: a file: URL)")
    parser.add_argument("--devices", default="pi3-64bit pi4-64bit", help="Imager device tags")
    parser.add_argument("--release", required=True, help="the build id shown in the description")
    parser.add_argument("--name", default="Appliance")
    parser.add_argument("--icon", default="", help="URL of a 40x40 icon")
    parser.add_argument("--website", default="")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    repo = {"os_list": [entry(args.image, args.xz, base_url=args.base_url, devices=args.devices.split(),
                              release=args.release, name=args.name, icon=args.icon,
                              website=args.website)]}
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(json.dumps(repo, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"{args.output}: {repo['os_list'][0]['url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
