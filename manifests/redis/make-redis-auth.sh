#!/bin/sh
# The Secret podnet-redis-auth: a random password for each component's Redis user and
# the ACL file Redis loads (users.acl.template, beside this script). Each component's
# Pod mounts only its own password (keys webhook, sync, agent, query). With --sentinel
# (for redis/sentinel/) also the replication and sentinel users (keys replica, sentinel).
#
#   manifests/redis/make-redis-auth.sh [--namespace NS] [--out DIR] [--no-kubectl] [--sentinel]
set -eu

namespace=podnet-system
out=""
apply=yes
sentinel=no
while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) namespace=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-kubectl) apply=no; shift ;;
    --sentinel) sentinel=yes; shift ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-redis-auth.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done
here=$(dirname "$0")
work=${out:-$(mktemp -d)}
mkdir -p "$work"
for user in webhook sync agent query; do
  openssl rand -hex 24 | tr -d '\n' > "$work/$user"
done
sed -e "s/@WEBHOOK@/$(cat "$work/webhook")/" -e "s/@SYNC@/$(cat "$work/sync")/" \
    -e "s/@AGENT@/$(cat "$work/agent")/" -e "s/@QUERY@/$(cat "$work/query")/" \
    -e '/^#/d' "$here/users.acl.template" > "$work/users.acl"
ha=""
if [ "$sentinel" = yes ]; then
  for user in replica sentinel; do
    openssl rand -hex 24 | tr -d '\n' > "$work/$user"
  done
  sed -e "s/@REPLICA@/$(cat "$work/replica")/" -e "s/@SENTINEL@/$(cat "$work/sentinel")/" \
      -e '/^#/d' "$here/sentinel/users.acl.template" >> "$work/users.acl"
  ha="--from-file=replica=$work/replica --from-file=sentinel=$work/sentinel"
fi
if [ "$apply" = yes ]; then
  kubectl -n "$namespace" create secret generic podnet-redis-auth \
    --from-file=users.acl="$work/users.acl" --from-file=webhook="$work/webhook" \
    --from-file=sync="$work/sync" --from-file=agent="$work/agent" \
    --from-file=query="$work/query" $ha --dry-run=client -o yaml | kubectl apply -f -
fi
[ -n "$out" ] || rm -r "$work"
