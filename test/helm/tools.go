//go:build tools

// The Helm CLI for the chart tests, built from its published Go module (Helm is not in
// Debian's packages here, and nothing may be downloaded at test time): `go build
// helm.sh/helm/v3/cmd/helm` in this module. This file pins the dependency for `go mod tidy`.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
