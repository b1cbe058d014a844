//go:build tools

// Mailpit, the SMTP server the notice tests deliver to, built from its published Go module
// (`go build github.com/axllent/mailpit` in this module): nothing may be downloaded at test
// time. Its web UI is not built (the tests read messages through its API). This file pins
// the dependency for `go mod tidy`.
package tools

import _ "github.com/axllent/mailpit"
