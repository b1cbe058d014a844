//go:build tools

// promtool for the alert tests, built from Prometheus' published Go module
// (`go build github.com/prometheus/prometheus/cmd/promtool` in this module): nothing may be
// downloaded at test time. This file pins the dependency for `go mod tidy`.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
