#!/bin/sh
# Self-signed certificates for podnet's webhook, without cert-manager.
#
# Makes a CA and a serving certificate for the webhook Service (EC P-256, openssl),
# stores them as the Secret podnet-webhook-tls, and writes the CA into the caBundle of
# every webhook of the MutatingWebhookConfiguration and ValidatingWebhookConfiguration
# "podnet". Run it after `kubectl apply -k manifests/`, and again before the
# certificate expires (the webhook picks up the new Secret without a restart).
#
#   manifests/self-signed/make-certs.sh [--namespace NS] [--service NAME] [--days N]
#                                       [--redis-address IP] [--out DIR]
#
# --redis-address IP[,IP...] also makes Redis's serving certificate for those node addresses (the
# host part of redis-address in config.yaml), signed by the same CA, as the Secret
# podnet-redis-tls (tls.crt, tls.key, ca.crt). --out DIR keeps the files in DIR (the
# scheduler extender needs ca.crt); with --out and --no-kubectl nothing is sent.
set -eu

namespace=podnet-system
service=podnet-webhook
secret=podnet-webhook-tls
configuration=podnet
days=825
out=""
apply=yes
redis_address=""

while [ $# -gt 0 ]; do
  case "$1" in
    --namespace) namespace=$2; shift 2 ;;
    --service) service=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --redis-address) redis_address=$2; shift 2 ;;
    --no-kubectl) apply=no; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-certs.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
done

if [ -n "$out" ]; then
  mkdir -p "$out"
  work=$out
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

dns="$service.$namespace.svc"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/ca.key" -out "$work/ca.crt" -days "$days" \
  -subj "/CN=podnet-webhook-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$dns" 2>/dev/null
cat > "$work/tls.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$service,DNS:$service.$namespace,DNS:$dns,DNS:$dns.cluster.local
EXT
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
  -CAcreateserial -out "$work/tls.crt" -days "$days" -extfile "$work/tls.ext" 2>/dev/null
rm -f "$work/tls.csr" "$work/tls.ext" "$work/ca.srl"
if [ -n "$redis_address" ]; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/redis.key" -out "$work/redis.csr" -subj "/CN=podnet-redis" 2>/dev/null
  cat > "$work/redis.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:$(echo "$redis_address" | sed 's/,/,IP:/g'),IP:127.0.0.1
EXT
  openssl x509 -req -in "$work/redis.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -out "$work/redis.crt" -days "$days" -extfile "$work/redis.ext" \
    2>/dev/null
  rm -f "$work/redis.csr" "$work/redis.ext" "$work/ca.srl"
fi

if [ "$apply" = no ]; then
  echo "certificates written to $work (nothing sent to the cluster)"
  exit 0
fi

kubectl -n "$namespace" create secret tls "$secret" \
  --cert="$work/tls.crt" --key="$work/tls.key" --dry-run=client -o yaml |
  kubectl apply -f -

if [ -n "$redis_address" ]; then
  kubectl -n "$namespace" create secret generic podnet-redis-tls \
    --from-file=tls.crt="$work/redis.crt" --from-file=tls.key="$work/redis.key" \
    --from-file=ca.crt="$work/ca.crt" --dry-run=client -o yaml | kubectl apply -f -
fi

bundle=$(base64 < "$work/ca.crt" | tr -d '\n')
for kind in mutatingwebhookconfiguration validatingwebhookconfiguration; do
  count=$(kubectl get "$kind" "$configuration" -o jsonpath='{range .webhooks[*]}x{end}')
  patch=""
  index=0
  while [ "$index" -lt "${#count}" ]; do
    patch="$patch{\"op\":\"add\",\"path\":\"/webhooks/$index/clientConfig/caBundle\",\"value\":\"$bundle\"},"
    index=$((index + 1))
  done
  kubectl patch "$kind" "$configuration" --type=json -p "[${patch%,}]"
done
echo "Secret $namespace/$secret created; caBundle set on $configuration webhooks"
