//go:build tools

// Package tools pins the command-line tools jobfleet's tests run: helm, to
// lint, render and install the chart, and kubeconform, to validate what
// it renders against the pinned CRDs' schemas. build.sh builds them from
// this module into the same cache as the control plane.
package tools

import (
	_ "github.com/yannh/kubeconform/cmd/kubeconform"
	_ "helm.sh/helm/v3/cmd/helm"
)
