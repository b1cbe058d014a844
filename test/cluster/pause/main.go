// Command pause is the sandbox ("pause") container of the local node's pods: it holds the
// pod's namespaces and waits until it is told to stop, reaping nothing (pods here share no
// PID namespace). Built from this module without dependencies, like Kubernetes' pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
