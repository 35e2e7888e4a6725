# The peers' install step, sourced by scripts/test and scripts/run: what a
# fresh Debian machine lacks is installed from Debian's packages (and, for
# the tests, the Python peers from PyPI into .venv).

# One line per Debian package: `package:check`, where check is a command
# (found on PATH or in /usr/sbin) or an absolute path, globs allowed, that
# exists once the package is installed.
PEERS=(
    qemu-system-x86:qemu-system-x86_64
    qemu-guest-agent:qemu-ga
    libvirt-clients:virsh
    # The test guest (scripts/guest-initramfs): Debian's cloud kernel,
    # a static busybox, and cpio to pack the initramfs.
    linux-image-cloud-amd64:/boot/vmlinuz-*-cloud-amd64
    busybox-static:/bin/busybox
    cpio:cpio
)

# Whether a peer's check holds.
have_peer() {
    case $1 in
        /*) compgen -G "$1" >/dev/null ;;
        *) command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ] ;;
    esac
}

# ensure_dev_null: /dev/null must be the null device. On this machine kind it
# has been seen as a regular file, made before the job started: every build
# script's "stderr to /dev/null" then landed in it, and cargo's rustc probe,
# which reads /dev/null as its source, failed on that text (and cached the
# failure in target/.rustc_info.json). A peer started with its stdin on
# /dev/null would read it too.
ensure_dev_null() {
    [ -c /dev/null ] && return
    echo "/dev/null is not the null device; recreating it" >&2
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    if $sudo mknod -m 666 /dev/null.vmwire c 1 3 &&
        $sudo mv -f /dev/null.vmwire /dev/null; then
        return
    fi
    # No right to make device nodes here: empty the file before every cargo
    # command instead (its probe runs first, before any build script writes),
    # in this shell and in the scripts it starts.
    echo "cannot make the null device; /dev/null is emptied before each cargo command" >&2
    cargo() {
        if [ -f /dev/null ]; then
            : >/dev/null || sudo truncate -s 0 /dev/null
        fi
        command cargo "$@"
    }
    export -f cargo
}

# install_peers [PACKAGE…]: installs those of the PEERS (all of them, or
# only the PACKAGEs named) that are missing, with apt-get (through sudo
# unless root).
install_peers() {
    local peer package check missing=()
    for peer in "${PEERS[@]}"; do
        package=${peer%%:*} check=${peer#*:}
        if (($#)) && ! [[ " $* " == *" $package "* ]]; then
            continue
        fi
        have_peer "$check" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        echo "installing ${missing[*]} (Debian packages)" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# install_python_peers: the Python peers (qemu.qmp, negotiator-common,
# XenAPI) from scripts/requirements.txt into .venv, unless already there.
install_python_peers() {
    if ! .venv/bin/python3 -c 'import qemu.qmp, negotiator_common, XenAPI' 2>/dev/null; then
        python3 -m venv .venv
        .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements.txt
    fi
}
