#!/usr/bin/env bash
# A throwaway certificate authority for the local secured services (Kafka's SASL_SSL and mTLS
# listeners, the TLS proxy in front of OpenSearch) and the clients that test them.
#
#   compose/pki.sh ensure DIR   create DIR's files unless they exist and stay valid for 7 more days
#   compose/pki.sh renew DIR    create them anew
#
# DIR then holds (PEM, keys unencrypted PKCS#8):
#   ca.pem ca.key            the CA every server and client certificate below is signed by
#   server.pem server.key    for "localhost" only (no IP SAN: a client connecting to 127.0.0.1
#                            must fail hostname verification)
#   server-keystore.pem      server.key then server.pem (Kafka's PEM keystore)
#   client.pem client.key    a client certificate (CN=sluice-client) for mutual TLS
#   other-ca.pem             an unrelated CA, for "unknown CA" tests
# Certificates are valid for 30 days from creation, so nothing depends on a fixed date.
set -euo pipefail
# shellcheck source=compose/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DAYS=30

# new_ca NAME: NAME.key and NAME.pem, a self-signed CA.
new_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$DAYS" \
    -subj "/CN=Sluice test $1" -keyout "$1.key" -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    2>/dev/null
}

# new_leaf NAME CN EXT: NAME.key and NAME.pem signed by ca, with the x509v3 extensions EXT.
new_leaf() {
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=$2" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$DAYS" \
    -sha256 -extfile <(printf '%s\n' "$3") -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

create() {
  local dir="$1" tmp
  need_cmd openssl openssl
  mkdir -p "$(dirname "$dir")"
  tmp="$(mktemp -d "$dir.new.XXXXXX")"
  (
    cd "$tmp"
    new_ca ca
    new_leaf server localhost \
      "$(printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment')"
    new_leaf client sluice-client \
      "$(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment')"
    cat server.key server.pem >server-keystore.pem
    new_ca other-ca
    rm -f other-ca.key ca.srl
    chmod 600 ./*.key server-keystore.pem
  )
  rm -rf "$dir"
  mv "$tmp" "$dir"
  log "new test CA and certificates in $dir (valid $DAYS days)"
}

valid() {
  local f
  for f in ca.pem ca.key server.pem server.key server-keystore.pem client.pem client.key other-ca.pem; do
    [[ -s "$1/$f" ]] || return 1
  done
  openssl x509 -checkend $((7 * 86400)) -noout -in "$1/server.pem" >/dev/null 2>&1 &&
    openssl x509 -checkend $((7 * 86400)) -noout -in "$1/client.pem" >/dev/null 2>&1
}

cmd_ensure() {
  [[ $# -eq 1 ]] || die "usage: pki.sh ensure DIR"
  mkdir -p "$(dirname "$1")"
  exec 7>"$1.lock"
  flock -w 60 7 || die "timed out waiting for another pki.sh on $1"
  valid "$1" || create "$1"
}

cmd_renew() {
  [[ $# -eq 1 ]] || die "usage: pki.sh renew DIR"
  mkdir -p "$(dirname "$1")"
  exec 7>"$1.lock"
  flock -w 60 7 || die "timed out waiting for another pki.sh on $1"
  create "$1"
}

run_subcommand 4,5 "$@"
