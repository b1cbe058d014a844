//go:build tools

// krew, the kubectl plugin manager, for the plugin's release test: `kubectl krew install
// --manifest --archive` installs the archive `npm run plugin:release` built, checking its
// sha256 against the manifest, as a user's krew would. Built from its published Go module
// (`go build sigs.k8s.io/krew/cmd/krew` in this module); this file pins it for `go mod tidy`.
package tools

import _ "sigs.k8s.io/krew/cmd/krew"
