"""The image scripts on small inputs: partition layout, flashing guards, Imager list, package lists."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from image_helpers import IMAGE_DIR, ROOT, require_root, require_tools

from image import disk, qemuboot

pytestmark = pytest.mark.tools


def make_rootfs_tarball(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for rel, text in {
        "etc/hostname": "appliance\n",
        # What the finalisation reads or cleans: the password check and the logs.
        "etc/shadow": "root:*:20000:0:99999:7:::\n",
        "var/log/syslog": "build log\n",
        "etc/appliance-release": 'VERSION="v1"\nBUILD_ID="v1-provisioned"\nTARGET="pi"\n',
        "boot/firmware/config.txt": "arm_64bit=1\n",
        "boot/firmware/overlays/README": "overlays\n",
        "boot/vmlinuz-6.1.0-1-arm64": "old kernel\n",
        "boot/vmlinuz-6.12.0-1-arm64": "kernel\n",
        "boot/initrd.img-6.12.0-1-arm64": "initrd\n",
        "boot/initrd.img-6.1.0-1-arm64": "old initrd\n",
        # What the cloudflared role leaves when Cloudflare's repository was reachable.
        "usr/share/keyrings/cloudflare-main.gpg": "key\n",
        "var/lib/dpkg/status": "Package: cloudflared\nStatus: install ok installed\nVersion: 2026.1.0\n\n",
    }.items():
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(tree, arcname=".")
    return tarball


def blkid(image: Path, offset: int) -> dict[str, str]:
    out = subprocess.run(["blkid", "--probe", "--offset", str(offset), "--output", "export", str(image)],
                         check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def debugfs_ls(filesystem: Path, directory: str) -> set[str]:
    """Names in a directory of an ext4 image, read without mounting it."""
    # `ls -p` prints one /inode/mode/uid/gid/name/size/ line per entry.
    out = subprocess.run(["debugfs", "-R", f"ls -p {directory}", str(filesystem)], check=True,
                         capture_output=True, text=True).stdout
    return {line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6}


def debugfs_cat(filesystem: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(filesystem)], check=True, capture_output=True,
                          text=True).stdout


def extract_partition(image: Path, partition: disk.Partition, dest: Path) -> Path:
    """One partition of a disk image as a file of its own (debugfs reads ext4 from a file)."""
    subprocess.run(["dd", f"if={image}", f"of={dest}", "bs=1M", f"skip={partition.start >> 20}",
                    f"count={partition.size >> 20}", "conv=sparse", "status=none"], check=True)
    return dest


def test_mkimage_makes_a_fat_boot_and_ext4_root_partition_by_label(tmp_path: Path) -> None:
    require_root()
    require_tools("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "debugfs", "blkid")
    output = tmp_path / "disk.img"
    kernel_dir = tmp_path / "kernel"
    # A new version assembled from the same root file system (a commit that left the app alone).
    env = {**os.environ, "IMAGE_BOOT_MB": "64", "IMAGE_ROOT_FREE_MB": "16", "IMAGE_VERSION": "v2",
           "IMAGE_BUILD_ID": "v2-assembled", "IMAGE_TARGET": "pi", "IMAGE_BASE_NAME": "debian-trixie"}

    built = subprocess.run([str(IMAGE_DIR / "mkimage.sh"), str(make_rootfs_tarball(tmp_path)), str(output),
                            str(kernel_dir)], check=True, env=env, stderr=subprocess.PIPE, text=True)

    # The build log gives each phase's time.
    assert re.search(r"==> \[[\d:]+\] phase assemble \(mkimage.sh\) took 0 min \d\d s\n", built.stderr)

    boot, root = disk.partitions(output)
    assert (boot.type_id, boot.start, boot.size) == (0x0C, 4 << 20, 64 << 20)
    assert root.type_id == 0x83
    assert root.start == boot.start + boot.size
    assert blkid(output, boot.start)["LABEL"] == "RASPIFIRM"
    assert blkid(output, root.start)["LABEL"] == "RASPIROOT"
    assert set(qemuboot.boot_files(output)) >= {"config.txt", "overlays"}
    # The root file system keeps /boot/firmware as an empty mount point.
    root_part = extract_partition(output, root, tmp_path / "root.part")
    assert debugfs_ls(root_part, "/boot/firmware") == {".", ".."}
    assert debugfs_ls(root_part, "/etc") >= {"hostname"}
    # The stamp is written here, once (the tarball's stale v1 stamp is replaced, not patched), and
    # a copy lies beside the image for os-list.json.
    release = debugfs_cat(root_part, "/etc/appliance-release")
    fields = dict(line.split("=", 1) for line in release.splitlines())
    assert {key: fields[key] for key in ("VERSION", "BUILD_ID", "TARGET", "BASE")} == {
        "VERSION": '"v2"', "BUILD_ID": '"v2-assembled"', "TARGET": '"pi"', "BASE": '"debian-trixie"'}
    assert re.fullmatch(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', fields["BUILD_DATE"])
    # What the cloudflared role got: the version installed and the sha256 of the key it trusted.
    assert fields["CLOUDFLARED_VERSION"] == '"2026.1.0"'
    key_sha256 = hashlib.sha256(b"key\n").hexdigest()
    assert fields["CLOUDFLARED_REPO_KEY_SHA256"] == f'"{key_sha256}"'
    assert output.with_name(output.name + ".release").read_text() == release
    # The newest kernel and its initrd, for QEMU's direct boot.
    assert (kernel_dir / "vmlinuz").read_text() == "kernel\n"
    assert (kernel_dir / "initrd.img").read_text() == "initrd\n"
    # Sparse: the free space is not written.
    assert output.stat().st_blocks * 512 < output.stat().st_size


def test_customize_image_keeps_the_bases_partitions_and_boot_files(tmp_path: Path) -> None:
    """BASE_IMAGE path on a small image, playbook skipped: table, labels and boot files stay."""
    require_root()
    require_tools("mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "debugfs", "blkid", "losetup",
                  "resize2fs", "xz")
    base = tmp_path / "base.img"
    small = {"IMAGE_BOOT_MB": "64", "IMAGE_ROOT_FREE_MB": "16"}
    subprocess.run([str(IMAGE_DIR / "mkimage.sh"), str(make_rootfs_tarball(tmp_path)), str(base)], check=True,
                   env={**os.environ, **small})
    subprocess.run(["xz", "-k", "-0", "-T1", str(base)], check=True)
    output = tmp_path / "custom.img"

    # No playbook there: run_playbook skips it, the rest of the customisation runs as in a build.
    env = {**os.environ, **small, "IMAGE_GROW_MB": "64", "IMAGE_PLAYBOOK": str(tmp_path / "none.yml"),
           "IMAGE_VERSION": "v1", "IMAGE_BUILD_ID": "v1-test"}
    subprocess.run([str(IMAGE_DIR / "customize-image.sh"), f"{base}.xz", str(output)], check=True, env=env)

    (base_boot, base_root), (boot, root) = disk.partitions(base), disk.partitions(output)
    assert boot == base_boot
    assert (root.start, root.type_id) == (base_root.start, base_root.type_id)
    assert output.stat().st_size == root.start + root.size
    for key in ("LABEL", "UUID"):
        assert blkid(output, boot.start)[key] == blkid(base, boot.start)[key]
    assert blkid(output, root.start)["LABEL"] == "RASPIROOT"
    assert set(qemuboot.boot_files(output)) >= {"config.txt", "overlays"}
    root_part = extract_partition(output, root, tmp_path / "root.part")
    # The boot files went back to the FAT, not into the root file system.
    assert debugfs_ls(root_part, "/boot/firmware") == {".", ".."}
    assert "appliance-growroot.service" in debugfs_ls(root_part, "/etc/systemd/system/local-fs.target.wants")
    release = debugfs_cat(root_part, "/etc/appliance-release")
    assert 'BUILD_ID="v1-test"' in release
    assert 'BASE="base.img.xz"' in release


def test_a_foreign_build_without_arch_test_stops_first_and_names_the_packages(tmp_path: Path) -> None:
    """mmdebstrap would stop deep into its run with "install arch-test for foreign architecture support"."""
    host = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout
    foreign, qemu = ("amd64", "x86_64") if host.strip() == "arm64" else ("arm64", "aarch64")
    path = tmp_path / "bin"
    path.mkdir()
    # Every tool the check looks for but arch-test (stand-ins: none of them runs).
    for tool in ("dpkg", "update-binfmts", f"qemu-{qemu}-static"):
        (path / tool).symlink_to("/bin/true")
    result = subprocess.run(["/bin/bash", "-c", f'. "{IMAGE_DIR}/lib.sh" && ensure_binfmt {foreign}'],
                            capture_output=True, text=True, env={"PATH": str(path)}, check=False)
    assert result.returncode != 0
    assert "missing tools: arch-test:" in result.stderr and "tools/apt-needs image" in result.stderr


def test_qemu_gets_the_images_command_line_with_its_own_console() -> None:
    cmdline = ("console=tty0 console=ttyS1,115200 root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0"
               " rootwait")
    assert qemuboot.qemu_append(cmdline, "ttyAMA0,115200") == (
        "root=LABEL=RASPIROOT rw fsck.repair=yes net.ifnames=0 rootwait"
        " systemd.default_device_timeout_sec=600 console=ttyAMA0,115200"
    )
    assert qemuboot.qemu_append("", "ttyS0").endswith("console=ttyS0")
    assert "no_timer_check" in qemuboot.qemu_append("", "ttyS0", "no_timer_check").split()
    assert qemuboot.parse_size("4G") == 4 << 30


def test_twin_command_line_has_bluetooth_on_the_second_serial_port(tmp_path: Path) -> None:
    machine = qemuboot.QemuMachine(
        arch="amd64", disk=tmp_path / "disk.img", kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img",
        append="root=LABEL=RASPIROOT", state=tmp_path, ssh_port=2222, http_port=8080,
        bt_socket=tmp_path / "bt.sock",
    )
    cmd = " ".join(machine.command())
    assert "hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80" in cmd
    assert "-accel tcg,thread=multi -cpu max" in cmd
    # The console is the first serial port (ttyS0), the controller the second (ttyS1).
    assert cmd.index("-serial chardev:con") < cmd.index(f"socket,id=bt,path={tmp_path}/bt.sock,server=off")
    assert cmd.index("-serial chardev:con") < cmd.index("-serial chardev:bt")


def test_qemu_forwards_learn_the_ports_qemu_picked() -> None:
    usernet = """Hub -1 (net):
  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ
  TCP[HOST_FORWARD]   8       127.0.0.1 42533       10.0.2.15    22     0     0
  TCP[HOST_FORWARD]   3       127.0.0.1 41555       10.0.2.15    80     0     0
  UDP[236 sec]       44        10.0.2.15   68   255.255.255.255    67     0     0
"""
    assert qemuboot.forwarded_ports(usernet) == {22: 42533, 80: 41555}
    machine = qemuboot.QemuMachine(arch="amd64", disk=Path("d"), kernel=Path("k"), initrd=Path("i"),
                                   append="", state=Path("s"), ssh_port=0, http_port=None)
    # Port 0 is asked for (QEMU binds a free one), None is no forward at all.
    assert ",hostfwd=tcp:127.0.0.1:0-:22" in " ".join(machine.command())
    assert "-:80" not in " ".join(machine.command())


def make_flashable(tmp_path: Path) -> tuple[Path, bytes]:
    """A 4 MiB image with data in its first and last MiB, compressed, with its .bmap."""
    require_tools("bmaptool", "xz")
    data = os.urandom(1 << 20)
    image = tmp_path / "small.img"
    with image.open("wb") as stream:
        stream.write(data)
        stream.seek(3 << 20)
        stream.write(data)
    subprocess.run(["bmaptool", "create", "--output", str(tmp_path / "small.img.bmap"), str(image)],
                   check=True, capture_output=True)
    subprocess.run(["xz", "-k", "-0", str(image)], check=True)
    return tmp_path / "small.img.xz", image.read_bytes()


def flash(image: Path, device: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(IMAGE_DIR / "flash.sh"), str(image), device], capture_output=True, text=True,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL, check=False)


def test_flash_refuses_the_disk_that_holds_the_running_system(tmp_path: Path) -> None:
    require_root()
    image, _ = make_flashable(tmp_path)
    source = subprocess.run(["findmnt", "-no", "SOURCE", "/"], capture_output=True, text=True,
                            check=True).stdout.strip()
    if not source.startswith("/dev/"):
        pytest.skip(f"/ is on {source}, not a block device")
    disk = subprocess.run(["lsblk", "-nspo", "NAME,TYPE", source], capture_output=True, text=True,
                          check=True).stdout.split()
    system_disk = disk[disk.index("disk") - 1]
    result = flash(image, system_disk, FLASH_FORCE="1", FLASH_YES="1")
    assert result.returncode != 0
    assert "running system" in result.stderr or "is mounted" in result.stderr


def test_flash_refuses_a_file_and_a_mounted_disk(tmp_path: Path, loop_image: tuple[Path, str]) -> None:
    require_tools("mkfs.ext4")
    image, _ = make_flashable(tmp_path)
    assert "not a block device" in flash(image, str(tmp_path / "small.img")).stderr

    _, device = loop_image
    subprocess.run(["mkfs.ext4", "-q", device], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    try:
        result = flash(image, device, FLASH_FORCE="1", FLASH_YES="1")
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    assert result.returncode != 0
    assert "is mounted" in result.stderr


def test_flash_asks_for_force_on_a_fixed_disk_then_writes_it(tmp_path: Path,
                                                            loop_image: tuple[Path, str]) -> None:
    image, content = make_flashable(tmp_path)
    backing, device = loop_image

    refused = flash(image, device, FLASH_YES="1")
    assert refused.returncode != 0
    assert "FLASH_FORCE=1" in refused.stderr
    unasked = flash(image, device, FLASH_FORCE="1")
    assert unasked.returncode != 0
    assert "FLASH_YES=1" in unasked.stderr

    written = flash(image, device, FLASH_FORCE="1", FLASH_YES="1")
    assert written.returncode == 0, written.stderr
    assert backing.read_bytes()[: len(content)] == content


def test_os_list_describes_the_compressed_and_extracted_image(tmp_path: Path) -> None:
    image = tmp_path / "appliance-v1-arm64.img"
    image.write_bytes(b"\0" * 4096 + b"image")
    xz = tmp_path / "appliance-v1-arm64.img.xz"
    xz.write_bytes(lzma.compress(image.read_bytes()))
    output = tmp_path / "os-list.json"

    subprocess.run(["python3", str(IMAGE_DIR / "os-list.py"), "--image", str(image), "--xz", str(xz),
                    "--base-url", "https://example.test/images/", "--devices", "pi3-64bit pi4-64bit",
                    "--release", "v1-20260101T000000Z", "--output", str(output)], check=True)

    (entry,) = json.loads(output.read_text())["os_list"]
    assert entry["url"] == "https://example.test/images/appliance-v1-arm64.img.xz"
    assert entry["extract_size"] == image.stat().st_size
    assert entry["extract_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert entry["image_download_size"] == xz.stat().st_size
    assert entry["image_download_sha256"] == hashlib.sha256(xz.read_bytes()).hexdigest()
    assert entry["devices"] == ["pi3-64bit", "pi4-64bit"]
    assert "For Raspberry Pi 3 B, 3 B+, Zero 2 W; 4 B, 400." in entry["description"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry["release_date"])
    assert "init_format" not in entry


def listed_packages(*names: str) -> set[str]:
    packages: set[str] = set()
    for name in names:
        for line in (IMAGE_DIR / "packages" / f"{name}.list").read_text().splitlines():
            package = line.split("#", 1)[0].strip()
            if package:
                packages.add(package)
    return packages


def test_base_lists_hold_what_the_playbook_installs() -> None:
    """Packages the roles install belong in the cached base, or every rebuild installs them emulated."""
    yaml = pytest.importorskip("yaml")
    roles = ROOT / "ansible" / "roles"
    if not roles.is_dir():
        pytest.skip("no ansible/roles yet")
    wanted: set[str] = set(yaml.safe_load((roles / "base" / "defaults" / "main.yml").read_text())
                           .get("base_packages", []))
    for tasks in roles.glob("*/tasks/*.yml"):
        for task in yaml.safe_load(tasks.read_text()) or []:
            apt = task.get("ansible.builtin.apt") or task.get("apt") or {}
            name = apt.get("name") if isinstance(apt, dict) else None
            if isinstance(name, str) and "{{" not in name:
                wanted.add(name)
            elif isinstance(name, list):
                wanted.update(n for n in name if "{{" not in n)
            elif isinstance(name, str):
                # e.g. "{{ ['bluez'] + (['bluez-firmware'] if ...) }}": the quoted names in it.
                wanted.update(re.findall(r"'([a-z0-9][a-z0-9+.-]+)'", name))
    wanted -= {"pi", "twin", "Debian"}
    assert wanted <= listed_packages("common", "pi"), sorted(wanted - listed_packages("common", "pi"))
