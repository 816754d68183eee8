#!/usr/bin/env bash
# Entry point of the dsgd images.
#
#   entrypoint.sh worker               an ssh server on port 2222, in the foreground, for mpirun
#   entrypoint.sh launcher [CMD...]    ssh client set up, then CMD (default: idle until stopped,
#                                      for `docker compose exec launcher ...`)
#   entrypoint.sh CMD...               anything else runs as is (single-container use)
#
# mpirun on the launcher logs into the workers as the image's user with one key pair, read
# from $DSGD_SSH_DIR (default /ssh), a volume every container of the cluster mounts. Put your
# own id_ed25519 and id_ed25519.pub there (a read-only mount is fine), or leave the volume
# empty and the first container to start creates a pair. Keys are never built into the image:
# a build argument stays readable in the image history.
#
# Everything runs as the unprivileged user, sshd included; an sshd started by a user can
# only log that same user in, which is all mpirun needs.
set -euo pipefail

key_dir=${DSGD_SSH_DIR:-/ssh}
port=${DSGD_SSH_PORT:-2222}
ssh_home=$HOME/.ssh

# Make sure $key_dir holds a key pair: create one if nobody has, else wait for its creator.
shared_key_pair() {
  if [ ! -f "$key_dir/id_ed25519.pub" ] && mkdir "$key_dir/.creating" 2>/dev/null; then
    ssh-keygen -q -t ed25519 -N "" -C "dsgd cluster" -f "$key_dir/.new_key"
    mv "$key_dir/.new_key" "$key_dir/id_ed25519"
    mv "$key_dir/.new_key.pub" "$key_dir/id_ed25519.pub"   # last: its presence means done
  fi
  for _ in $(seq 60); do
    [ ! -f "$key_dir/id_ed25519.pub" ] || return 0
    sleep 0.5
  done
  echo "entrypoint: no ssh key pair in $key_dir after 30 s (an interrupted start leaves" \
       "$key_dir/.creating behind: remove the volume and start again)" >&2
  exit 1
}

setup_ssh() {
  install -d -m 700 "$ssh_home"
  shared_key_pair
  install -m 600 "$key_dir/id_ed25519" "$ssh_home/id_ed25519"
  install -m 600 "$key_dir/id_ed25519.pub" "$ssh_home/authorized_keys"
  cat > "$ssh_home/config" <<EOF
Host *
  Port $port
  IdentityFile $ssh_home/id_ed25519
  # Containers on the cluster's private network get new host keys whenever they are
  # recreated, so there is nothing stable to check them against.
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
  chmod 600 "$ssh_home/config"
}

run_sshd() {
  local host_key=$ssh_home/ssh_host_ed25519_key
  [ -f "$host_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$host_key"
  cat > "$ssh_home/sshd_config" <<EOF
Port $port
HostKey $host_key
PidFile $ssh_home/sshd.pid
AuthorizedKeysFile $ssh_home/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
# mpirun's daemons and the ranks they start need the image's PATH (python, prted).
SetEnv PATH=$PATH
EOF
  # sshd re-executes itself and therefore wants an absolute path.
  exec "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$ssh_home/sshd_config"
}

case "${1:-}" in
  worker)
    setup_ssh
    run_sshd
    ;;
  launcher)
    shift
    setup_ssh
    if [ $# -gt 0 ]; then exec "$@"; fi
    # Idle, but stop at once on `docker compose down` (PID 1 gets no default signal handlers).
    trap 'exit 0' TERM INT
    sleep infinity &
    wait
    ;;
  "")
    exec bash
    ;;
  *)
    exec "$@"
    ;;
esac
