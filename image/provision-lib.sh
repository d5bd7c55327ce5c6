# The playbook stage's helpers (sourced after lib.sh by provision.sh, customize-image.sh and
# mkimage.sh, not executed): mount the chroot's kernel file systems, run the playbook, finalise the
# root file system, stamp the release.
# Kept apart from lib.sh, on which the cached base depends, so that a change here re-runs only the
# playbook stage and not the 17-minute emulated base build.
# shellcheck shell=bash

# The chroot gets the kernel file systems and a /run holding resolv.conf (trixie's /etc/resolv.conf
# points into /run), and a policy-rc.d so that package scripts start no services at build time.
# Everything mounted here is recorded so that chroot_unmount undoes exactly that, innermost first.
CHROOT_MOUNTS=()
chroot_mount() {
    local root="$1" target
    mount -t proc proc "${root}/proc"
    CHROOT_MOUNTS+=("${root}/proc")
    mount -t sysfs sysfs "${root}/sys"
    CHROOT_MOUNTS+=("${root}/sys")
    mount --bind /dev "${root}/dev"
    CHROOT_MOUNTS+=("${root}/dev")
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "${root}/dev/pts"
    CHROOT_MOUNTS+=("${root}/dev/pts")
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "${root}/run"
    CHROOT_MOUNTS+=("${root}/run")
    mkdir -p "${root}/run/lock"
    # Name resolution in the chroot is the host's. When the chroot's /etc/resolv.conf is a link into
    # /run (systemd-resolved, NetworkManager), its target is made in the fresh /run; a plain file is
    # covered by a bind mount of the host's, so the image keeps its own.
    local link
    if [ -L "${root}/etc/resolv.conf" ]; then
        link="$(readlink "${root}/etc/resolv.conf")"
        case "${link}" in
            /*) target="${root}${link}" ;;
            *) target="${root}/etc/${link}" ;;
        esac
        mkdir -p "$(dirname "${target}")"
        cp -L /etc/resolv.conf "${target}"
    else
        [ -e "${root}/etc/resolv.conf" ] || : >"${root}/etc/resolv.conf"
        mount --bind "$(readlink -f /etc/resolv.conf)" "${root}/etc/resolv.conf"
        CHROOT_MOUNTS+=("${root}/etc/resolv.conf")
    fi
    # HTTPS from the chroot (pip, apt, get_url) trusts what the build host trusts, e.g. a proxy's CA
    # on a company network; the image keeps its own Debian bundle (this is only a mount).
    local bundle=/etc/ssl/certs/ca-certificates.crt
    if [ -f "${bundle}" ] && [ -f "${root}${bundle}" ]; then
        mount --bind -o ro "${bundle}" "${root}${bundle}"
        CHROOT_MOUNTS+=("${root}${bundle}")
    fi
    printf '#!/bin/sh\n# Written by the image build: no service starts inside the build chroot.\nexit 101\n' \
        >"${root}/usr/sbin/policy-rc.d"
    chmod 0755 "${root}/usr/sbin/policy-rc.d"
}

chroot_unmount() {
    local root="$1" i
    rm -f "${root}/usr/sbin/policy-rc.d"
    for ((i = ${#CHROOT_MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${CHROOT_MOUNTS[i]}" 2>/dev/null || umount -l "${CHROOT_MOUNTS[i]}" || true
    done
    CHROOT_MOUNTS=()
}

# run_playbook ROOT TARGET: provision ROOT with ansible/site.yml through the chroot connection.
# Settings (environment): IMAGE_PLAYBOOK, IMAGE_ANSIBLE_PLAYBOOK, IMAGE_CONSTRAINTS, IMAGE_WHEEL (the
# app's wheel, installed by the playbook; empty: the playbook makes the venv and leaves the app out,
# for install_app to add when the image is assembled).
run_playbook() {
    local root="$1" target="$2" playbook="${IMAGE_PLAYBOOK:-ansible/site.yml}" status=0
    local ansible="${IMAGE_ANSIBLE_PLAYBOOK:-ansible-playbook}" app=()
    if [ ! -f "${playbook}" ]; then
        step "playbook: ${playbook} does not exist yet, SKIPPED (the image holds the base system only)"
        return 0
    fi
    [ -x "$(command -v "${ansible}")" ] || die "${ansible} not found: make setup (or set IMAGE_ANSIBLE_PLAYBOOK)"
    [ -f "${IMAGE_CONSTRAINTS:-}" ] || die "IMAGE_CONSTRAINTS='${IMAGE_CONSTRAINTS:-}' is not a file"
    if [ -z "${IMAGE_WHEEL:-}" ]; then
        app=(-e appliance_install_wheel=false)
    else
        [ -f "${IMAGE_WHEEL}" ] || die "IMAGE_WHEEL='${IMAGE_WHEEL}' is not a file: build the app's wheel first"
        app=(-e "appliance_wheel=$(readlink -f "${IMAGE_WHEEL}")")
    fi
    step "playbook: ${playbook} on ${root} through the chroot connection (target ${target})"
    chroot_mount "${root}"
    # Pipelining saves a file transfer per task; profile_tasks prints each task's time, so a slow
    # emulated task shows. The interpreter is named so that discovery costs no extra emulated calls.
    ANSIBLE_PIPELINING=True \
    ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
    ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks \
    ANSIBLE_RETRY_FILES_ENABLED=False \
    ANSIBLE_HOST_KEY_CHECKING=False \
        "${ansible}" -i "${root}," -c community.general.chroot "${playbook}" \
        -e "appliance_target=${target}" \
        "${app[@]}" \
        -e "appliance_constraints=$(readlink -f "${IMAGE_CONSTRAINTS}")" \
        -e appliance_image_build=true \
        || status=$?
    chroot_unmount "${root}"
    [ "${status}" -eq 0 ] || die "the playbook failed (status ${status})"
}

# install_app ROOT ARCH: the app's wheel and its pinned dependencies into the venv the playbook made
# in ROOT (appliance_venv), installed by the build host's pip for the image's Python and
# architecture: wheels only, the binary ones for the image's CPU from PyPI, so that no pip runs
# emulated and an app-only change costs seconds here instead of minutes in the emulated playbook.
# Only the byte-compilation runs in the image (its Python writes its own .pyc files).
# Settings (environment): IMAGE_APP_WHEEL, IMAGE_CONSTRAINTS, IMAGE_PIP_PYTHON (a Python with pip,
# default python3), IMAGE_APP_VENV (/opt/appliance, the role's appliance_venv).
install_app() {
    local root="$1" arch="$2" venv="${IMAGE_APP_VENV:-/opt/appliance}" python="${IMAGE_PIP_PYTHON:-python3}"
    local py version machine glibc minor stage platforms=() script
    [ -f "${IMAGE_APP_WHEEL:-}" ] || die "IMAGE_APP_WHEEL='${IMAGE_APP_WHEEL:-}' is not a file: make wheel"
    [ -f "${IMAGE_CONSTRAINTS:-}" ] || die "IMAGE_CONSTRAINTS='${IMAGE_CONSTRAINTS:-}' is not a file"
    "${python}" -m pip --version >/dev/null 2>&1 || die "${python} has no pip: make setup (or set IMAGE_PIP_PYTHON)"
    py="$(readlink "${root}/usr/bin/python3")" # python3.13
    version="${py#python}"
    [ -d "${root}${venv}/lib/${py}/site-packages" ] ||
        die "${venv} is not a ${py} venv in the image: the playbook's appliance role makes it"
    case "${arch}" in
        arm64) machine=aarch64 ;;
        amd64) machine=x86_64 ;;
        *) die "install_app: no wheel platform for ${arch}" ;;
    esac
    # Every manylinux tag the image's glibc accepts (pip takes the tags it is given, no older ones).
    glibc="$(sed -n '/^Package: libc6$/,/^$/s/^Version: 2\.\([0-9]*\).*/\1/p' "${root}/var/lib/dpkg/status")"
    [ -n "${glibc}" ] || die "no libc6 in ${root}'s dpkg status"
    for ((minor = 17; minor <= glibc; minor++)); do platforms+=(--platform "manylinux_2_${minor}_${machine}"); done
    platforms+=(--platform "manylinux2014_${machine}")
    step "app: $(basename "${IMAGE_APP_WHEEL}") and its pinned dependencies for ${py} on ${machine} (the host's pip)"
    stage="$(mktemp -d)"
    # A package that PyPI has only as source (PyRIC) is built into a wheel here first: --platform
    # takes wheels only. Its markers are the build host's, which only ever adds a backport the image's
    # newer Python would not need.
    "${python}" -m pip wheel --quiet --disable-pip-version-check -w "${stage}/wheels" \
        -c "${IMAGE_CONSTRAINTS}" "${IMAGE_APP_WHEEL}"
    "${python}" -m pip install --quiet --disable-pip-version-check --no-compile --target "${stage}/site" \
        --find-links "${stage}/wheels" --only-binary=:all: "${platforms[@]}" --implementation cp \
        --python-version "${version}" --abi "cp${version/./}" -c "${IMAGE_CONSTRAINTS}" "${IMAGE_APP_WHEEL}"
    # --target puts the scripts in site/bin, with the host's interpreter: the venv's, and its RECORD
    # files name them from site-packages (three levels down in a venv), so a later pip on the
    # device replaces them cleanly.
    for script in "${stage}/site/bin"/*; do
        sed -e "1s|^#!.*|#!${venv}/bin/python|" "${script}" >"${root}${venv}/bin/${script##*/}"
        chmod 0755 "${root}${venv}/bin/${script##*/}"
    done
    rm -rf "${stage}/site/bin"
    sed -i -e 's|^\.\./\.\./bin/|../../../bin/|' "${stage}"/site/*.dist-info/RECORD
    cp -R --preserve=mode,timestamps "${stage}/site/." "${root}${venv}/lib/${py}/site-packages/"
    chown -R 0:0 "${root}${venv}/bin" "${root}${venv}/lib"
    # What the role's copy task leaves there: a later run over SSH with the same wheel changes nothing.
    install -m 0644 "${IMAGE_APP_WHEEL}" "${IMAGE_CONSTRAINTS}" "${root}${venv}/dist/"
    rm -rf "${stage}"
    step "app: byte-compile it with the image's own ${py} (emulated)"
    chroot_mount "${root}"
    chroot "${root}" "${venv}/bin/python" -m compileall -q -j 0 "${venv}/lib/${py}/site-packages" >/dev/null ||
        { chroot_unmount "${root}"; die "byte-compiling the app in the image failed"; }
    chroot_unmount "${root}"
}

# finalize_rootfs ROOT: remove what must not be shared by every device made from the image
# (machine-id, SSH host keys, random seed), or is dead weight. The release stamp is written later,
# once, by the stage that makes the image (write_release in lib.sh).
finalize_rootfs() {
    local root="$1" bad
    step "finalize: no machine-id, no SSH host keys, no passwords"

    # An empty machine-id: systemd makes a new one on first boot and commits it once / is writable.
    # (Empty rather than "uninitialized": that would also make systemd apply presets on first boot,
    # re-enabling units the playbook disabled on purpose.)
    : >"${root}/etc/machine-id"
    [ -L "${root}/var/lib/dbus/machine-id" ] || rm -f "${root}/var/lib/dbus/machine-id"
    rm -f "${root}"/etc/ssh/ssh_host_*_key "${root}"/etc/ssh/ssh_host_*_key.pub
    rm -f "${root}/var/lib/systemd/random-seed" "${root}/var/lib/systemd/credential.secret"
    # mmdebstrap leaves the build host's resolvers in a plain /etc/resolv.conf: NetworkManager
    # writes the device's own once it has a connection.
    if [ -f "${root}/etc/resolv.conf" ] && [ ! -L "${root}/etc/resolv.conf" ]; then
        printf '# Written by NetworkManager when the appliance connects.\n' >"${root}/etc/resolv.conf"
    fi

    # No account may have a password or an empty password field: the admin account and its
    # password come from the first-boot config on the boot partition.
    bad="$(awk -F: '$2 == "" || ($2 !~ /^[!*]/) { print $1 }' "${root}/etc/shadow")"
    [ -z "${bad}" ] || die "accounts with a password or an empty password in the image: ${bad}"

    # Package lists and caches are rebuilt on the device by 'apt update'; logs start empty.
    rm -rf "${root}"/var/lib/apt/lists/* "${root}"/var/cache/apt/*.bin "${root}"/var/cache/apt/archives/*.deb
    mkdir -p "${root}/var/lib/apt/lists/partial"
    rm -rf "${root}/root/.ansible" "${root}/root/.cache" "${root}"/tmp/* "${root}"/var/tmp/*
    rm -f "${root}"/var/lib/dpkg/*-old "${root}"/var/cache/debconf/*-old "${root}/var/cache/ldconfig/aux-cache"
    find "${root}/var/log" -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.xz' \) -delete
    find "${root}/var/log" -type f -exec truncate -s 0 {} +
}

# write_release ROOT TARGET BASE_DESCRIPTION: stamp the build into ROOT/etc/appliance-release,
# once, by the stage that makes the image (mkimage.sh, customize-image.sh): the playbook stage's
# tarball is reused when only the version changed, so a stamp written there would be stale.
# Settings (environment): IMAGE_VERSION; IMAGE_BUILD_ID (default: VERSION-YYYYMMDDTHHMMSSZ, now).
# CLOUDFLARED_VERSION and CLOUDFLARED_REPO_KEY_SHA256 say what the cloudflared role got (both empty:
# Cloudflare's repository was unreachable, and the appliance installs cloudflared later).
write_release() {
    local root="$1" target="$2" base="$3" now version cloudflared key_sha256=""
    now="$(date -u +%s)"
    version="${IMAGE_VERSION:-unknown}"
    cloudflared="$(sed -n '/^Package: cloudflared$/,/^$/s/^Version: //p' "${root}/var/lib/dpkg/status" 2>/dev/null || true)"
    # The key cloudflared-install trusted (the role's cloudflared_repo_keyring).
    if [ -f "${root}/usr/share/keyrings/cloudflare-main.gpg" ]; then
        key_sha256="$(sha256sum "${root}/usr/share/keyrings/cloudflare-main.gpg" | cut -d ' ' -f 1)"
    fi
    cat >"${root}/etc/appliance-release" <<RELEASE
NAME="appliance"
VERSION="${version}"
BUILD_ID="${IMAGE_BUILD_ID:-${version}-$(date -u -d "@${now}" +%Y%m%dT%H%M%SZ)}"
BUILD_DATE="$(date -u -d "@${now}" +%Y-%m-%dT%H:%M:%SZ)"
TARGET="${target}"
BASE="${base}"
CLOUDFLARED_VERSION="${cloudflared}"
CLOUDFLARED_REPO_KEY_SHA256="${key_sha256}"
RELEASE
    chmod 0644 "${root}/etc/appliance-release"
    info "$(tr '\n' ' ' <"${root}/etc/appliance-release")"
}
