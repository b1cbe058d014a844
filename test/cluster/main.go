// Command controlplane runs a real, single-node Kubernetes control plane on loopback for
// tests and local development: embedded etcd, kube-apiserver with RBAC and an admin
// kubeconfig, and the kube-controller-manager controllers the operator relies on
// (garbage collection of ownerReferences, namespace deletion, service accounts).
//
// Usage:
//
//	controlplane [--dir DIR] [--port N] [--verbose] [--extra-client-ca PEM] [--assets DIR] [--keep-state]
//	             [--node --pause-binary PATH [--node-image ARCHIVE]...] [-- KUBE-APISERVER-FLAGS...]
//
// --node adds one real node (node.go): containerd and runc from the machine, a kubelet and
// kube-scheduler run as "controlplane kubelet|scheduler ...", ServiceAccount admission and
// the root-ca-cert-publisher; pods use the host network. Stopping undoes all of it.
//
// --extra-client-ca defaults to $CONTROLPLANE_EXTRA_CLIENT_CA; --keep-state restarts on the
// etcd data and PKI of an earlier run in DIR.
//
// Extra kube-apiserver flags come after "--" and from CONTROLPLANE_APISERVER_ARGS
// (whitespace-separated); they are applied after the defaults, so they override them.
// The kubeconfig is written atomically to DIR/kubeconfig once /readyz answers 200 and the
// controller manager is healthy; then one line is printed. SIGINT/SIGTERM stop everything.
//
// kube-controller-manager runs as a second process of this same binary
// ("controlplane controller-manager ..."): in one process with the API server its feature
// gate registration collides with the API server's.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

// Controllers the operator depends on; the rest of kube-controller-manager is not needed
// without nodes.
var controllers = []string{
	"garbage-collector-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"clusterrole-aggregation-controller",
	// restartTargets: a changed pod template makes a new ReplicaSet, which makes pods (they
	// stay Pending: there are no nodes).
	"deployment-controller",
	"replicaset-controller",
}

// With --node, what pods need besides: the kube-root-ca.crt ConfigMap in every namespace,
// and the node lifecycle, which lifts the not-ready taint the kubelet registers its node with.
var nodeControllers = []string{"root-ca-certificate-publisher-controller", "node-lifecycle-controller"}

func main() {
	if len(os.Args) > 1 {
		// The other components run as processes of this same binary: their feature gates and
		// flags collide with the API server's in one process.
		var cmd interface {
			SetArgs([]string)
			Execute() error
		}
		switch os.Args[1] {
		case "controller-manager":
			cmd = kcm.NewControllerManagerCommand()
		case "scheduler":
			cmd = scheduler.NewSchedulerCommand()
		case "kubelet":
			cmd = kubelet.NewKubeletCommand(context.Background())
		}
		if cmd != nil {
			cmd.SetArgs(os.Args[2:])
			if err := cmd.Execute(); err != nil {
				os.Exit(1)
			}
			return
		}
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(userErr, "controlplane: %v\n", err)
		os.Exit(1)
	}
}

// userErr is the original stderr; fd 2 itself may be redirected to a log file because
// the API server logs there through klog.
var userErr io.Writer = os.Stderr

func run(args []string) error {
	// Whoever started us (npm run cluster, the test setup) may die without stopping us:
	// turn that into an orderly stop rather than an orphaned control plane.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_PDEATHSIG): %v", errno)
	}
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	dir := fs.String("dir", ".cluster", "state directory: kubeconfig, certificates, etcd data, logs")
	port := fs.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0 picks a free one)")
	verbose := fs.Bool("verbose", false, "write API server, controller manager and etcd logs to stderr instead of DIR/*.log")
	assets := fs.String("assets", "", "directory with envtest binaries (etcd, kube-apiserver) to run instead of the built-in ones")
	keepState := fs.Bool("keep-state", false, "reuse DIR's etcd data and certificates from an earlier run (a restart, not a fresh cluster); needs the same --port")
	extraClientCA := fs.String("extra-client-ca", os.Getenv("CONTROLPLANE_EXTRA_CLIENT_CA"), "PEM file of another CA whose client certificates the API server accepts, besides its own")
	withNode := fs.Bool("node", false, "also run one node: containerd, a kubelet, kube-scheduler, ServiceAccount admission and kube-root-ca.crt (pods on the host network only)")
	pauseBinary := fs.String("pause-binary", "", "with --node: the pause binary for the sandbox image")
	var nodeImages []string
	fs.Func("node-image", "with --node: an OCI or Docker image archive to import into the node's containerd (repeatable)", func(v string) error {
		nodeImages = append(nodeImages, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	extra := fs.Args()
	if len(extra) > 0 && extra[0] == "--" {
		extra = extra[1:]
	}
	extra = append(strings.Fields(os.Getenv("CONTROLPLANE_APISERVER_ARGS")), extra...)

	absDir, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(absDir, 0o700); err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(absDir, "kubeconfig")
	// A kubeconfig left by an earlier run points at a dead server: remove it first so
	// nobody mistakes it for this one.
	_ = os.Remove(kubeconfigPath)
	_, statErr := os.Stat(filepath.Join(absDir, "pki", "ca.crt"))
	reuse := *keepState && statErr == nil
	if !reuse {
		for _, stale := range []string{"etcd", "pki"} {
			if err := os.RemoveAll(filepath.Join(absDir, stale)); err != nil {
				return err
			}
		}
	}

	if !*verbose {
		if err := redirectStderr(filepath.Join(absDir, "apiserver.log")); err != nil {
			return err
		}
	}

	if *port == 0 {
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	var pki *pki
	if reuse {
		pki, err = loadPKI(filepath.Join(absDir, "pki"))
	} else {
		pki, err = writePKI(filepath.Join(absDir, "pki"))
	}
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	// The client CA bundle: our own CA (the admin certificate), plus one to trust besides.
	clientCA := append([]byte{}, pki.caPEM...)
	if *extraClientCA != "" {
		extra, err := os.ReadFile(*extraClientCA)
		if err != nil {
			return fmt.Errorf("--extra-client-ca: %w", err)
		}
		clientCA = append(clientCA, extra...)
	}
	if err := os.WriteFile(pki.path("client-ca.crt"), clientCA, 0o600); err != nil {
		return err
	}

	var etcdURL string
	if *assets == "" {
		etcd, url, err := startEtcd(absDir, *verbose)
		if err != nil {
			return fmt.Errorf("starting etcd: %w", err)
		}
		defer etcd.Close()
		etcdURL = url
	} else {
		etcd, url, err := startAssetEtcd(*assets, absDir, *verbose)
		if err != nil {
			return fmt.Errorf("starting etcd from %s: %w", *assets, err)
		}
		defer stopProcess(etcd)
		etcdURL = url
	}

	serverURL := fmt.Sprintf("https://127.0.0.1:%d", *port)
	adminKubeconfig, err := pki.kubeconfig(serverURL)
	if err != nil {
		return err
	}
	// The controller manager gets its own copy so that the public kubeconfig appears
	// only when everything is ready.
	internalKubeconfig := filepath.Join(absDir, "pki", "admin.kubeconfig")
	if err := os.WriteFile(internalKubeconfig, adminKubeconfig, 0o600); err != nil {
		return err
	}

	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", *port),
		"--cert-dir=" + filepath.Join(absDir, "pki"),
		"--tls-cert-file=" + pki.path("serving.crt"),
		"--tls-private-key-file=" + pki.path("serving.key"),
		"--client-ca-file=" + pki.path("client-ca.crt"),
		"--service-account-key-file=" + pki.path("sa.pub"),
		"--service-account-signing-key-file=" + pki.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	if !*withNode {
		// Without a node no pod runs: no token volumes to add, and pods need no ServiceAccount.
		apiArgs = append(apiArgs, "--disable-admission-plugins=ServiceAccount")
	} else {
		// Logs and exec reach the kubelet on the node's address, never through a DNS lookup
		// of its name.
		apiArgs = append(apiArgs, "--kubelet-preferred-address-types=InternalIP",
			"--kubelet-client-certificate="+pki.path("admin.crt"), "--kubelet-client-key="+pki.path("admin.key"))
	}
	apiArgs = append(apiArgs, extra...)
	if *withNode && *pauseBinary == "" {
		return errors.New("--node needs --pause-binary")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 2)
	// kube-apiserver installs its own handler for these too and shuts itself down.
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)

	apiDone := make(chan error, 1)
	var stopAPIServer func()
	if *assets == "" {
		// In process; it stops itself on SIGINT/SIGTERM through its own signal handler.
		stopAPIServer = func() {}
		go func() {
			cmd := apiserver.NewAPIServerCommand()
			cmd.SetArgs(apiArgs)
			cmd.SilenceErrors = true
			apiDone <- cmd.Execute()
		}()
	} else {
		proc, err := startProcess(filepath.Join(*assets, "kube-apiserver"), apiArgs, filepath.Join(absDir, "apiserver.log"), *verbose)
		if err != nil {
			return err
		}
		defer stopProcess(proc)
		stopAPIServer = func() { stopProcess(proc) }
		go func() { apiDone <- proc.Wait() }()
	}

	client := pki.httpClient()
	if err := waitFor(ctx, apiDone, signals, client, serverURL+"/readyz", 3*time.Minute); err != nil {
		return fmt.Errorf("kube-apiserver did not become ready (log: %s): %w", filepath.Join(absDir, "apiserver.log"), err)
	}

	kcmPort, err := freePort()
	if err != nil {
		return err
	}
	manager, err := startControllerManager(absDir, internalKubeconfig, kcmPort, *verbose, *withNode)
	if err != nil {
		return err
	}
	defer stopProcess(manager)
	kcmDone := make(chan error, 1)
	go func() { kcmDone <- manager.Wait() }()
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitFor(ctx, kcmDone, signals, insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), 2*time.Minute); err != nil {
		return fmt.Errorf("kube-controller-manager did not become healthy (log: %s): %w", filepath.Join(absDir, "controller-manager.log"), err)
	}

	var n *node
	if *withNode {
		started := time.Now()
		n, err = startNode(nodeOptions{dir: absDir, kubeconfig: internalKubeconfig, pauseBinary: *pauseBinary, images: nodeImages, port: *port, verbose: *verbose}, client, serverURL)
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		defer n.stop()
		fmt.Printf("node ready: %s at %s in %.1fs\n", nodeName, n.ip, time.Since(started).Seconds())
	}

	if err := writeAtomically(kubeconfigPath, adminKubeconfig); err != nil {
		return err
	}
	defer os.Remove(kubeconfigPath)
	fmt.Printf("control plane ready: %s (Kubernetes %s), KUBECONFIG=%s\n", serverURL, serverVersion(client, serverURL), kubeconfigPath)

	select {
	case sig := <-signals:
		fmt.Fprintf(userErr, "controlplane: %s received, stopping\n", sig)
		if n != nil {
			// First: the kubelet's connections would hold the API server's shutdown.
			n.stop()
		}
		stopProcess(manager)
		stopAPIServer()
		select {
		case <-apiDone:
		case <-time.After(30 * time.Second):
			return errors.New("kube-apiserver did not stop within 30s")
		}
		return nil
	case err := <-apiDone:
		return fmt.Errorf("kube-apiserver exited: %v", err)
	case err := <-kcmDone:
		return fmt.Errorf("kube-controller-manager exited: %v", err)
	}
}

func startEtcd(dir string, verbose bool) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "controlplane"
	cfg.Dir = filepath.Join(dir, "etcd")
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// A throwaway test store: durability is not worth the fsync latency.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"
	if verbose {
		cfg.LogOutputs = []string{"stderr"}
	} else {
		cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, clientURL.String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(time.Minute):
		e.Close()
		return nil, "", errors.New("etcd not ready after 1m")
	}
}

// startAssetEtcd runs an envtest etcd binary with the same settings as the embedded one.
func startAssetEtcd(assets, dir string, verbose bool) (*exec.Cmd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	cmd, err := startProcess(filepath.Join(assets, "etcd"), []string{
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, filepath.Join(dir, "etcd.log"), verbose)
	if err != nil {
		return nil, "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	client := &http.Client{Timeout: time.Second}
	if err := waitFor(context.Background(), done, nil, client, clientURL+"/health", time.Minute); err != nil {
		stopProcess(cmd)
		return nil, "", err
	}
	return cmd, clientURL, nil
}

func startControllerManager(dir, kubeconfig string, port int, verbose, withNode bool) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	names := controllers
	if withNode {
		names = append(append([]string{}, controllers...), nodeControllers...)
	}
	return startProcess(self, []string{"controller-manager",
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + filepath.Join(dir, "pki", "controller-manager"),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + filepath.Join(dir, "pki", "sa.key"),
		"--root-ca-file=" + filepath.Join(dir, "pki", "ca.crt"),
		"--controllers=" + strings.Join(names, ","),
		// Fast garbage collection and namespace deletion keep tests short.
		"--concurrent-gc-syncs=5",
		"--namespace-sync-period=10s",
		"--profiling=false",
	}, filepath.Join(dir, "controller-manager.log"), verbose)
}

// startProcess starts a child whose output goes to logPath (or stderr when verbose) and
// which dies with us, even when we are killed with SIGKILL.
func startProcess(binary string, args []string, logPath string, verbose bool) (*exec.Cmd, error) {
	cmd := exec.Command(binary, args...)
	if verbose {
		cmd.Stdout, cmd.Stderr = userErr, userErr
	} else {
		log, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = log, log
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(binary), err)
	}
	return cmd, nil
}

func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// waitFor polls url until it answers 200, the component exits, a signal arrives or the
// timeout passes.
func waitFor(ctx context.Context, exited <-chan error, signals <-chan os.Signal, client *http.Client, url string, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		case sig := <-signals:
			return fmt.Errorf("%s received while starting", sig)
		case <-deadline:
			return fmt.Errorf("%s not ready after %s (last: %s)", url, timeout, last)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			resp, err := client.Get(url)
			if err != nil {
				last = err.Error()
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		}
	}
}

func serverVersion(client *http.Client, serverURL string) string {
	resp, err := client.Get(serverURL + "/version")
	if err != nil {
		return "unknown"
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	const key = `"gitVersion": "`
	if i := strings.Index(string(body), key); i >= 0 {
		rest := string(body)[i+len(key):]
		if j := strings.Index(rest, `"`); j >= 0 {
			return rest[:j]
		}
	}
	return "unknown"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeAtomically(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubeconfig-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// redirectStderr sends fd 2 (klog's output) to a log file and keeps the original stderr
// for messages meant for the person running the command.
func redirectStderr(path string) error {
	log, err := os.Create(path)
	if err != nil {
		return err
	}
	orig, err := syscall.Dup(2)
	if err != nil {
		return err
	}
	userErr = os.NewFile(uintptr(orig), "stderr")
	return syscall.Dup3(int(log.Fd()), 2, 0)
}
