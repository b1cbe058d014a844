package main

// One real node for the local control plane (--node): containerd and runc from the
// machine's packages, a kubelet and a kube-scheduler from this binary, pods on the host
// network only. Invariants:
//   - every packet stays on this machine: the node's address is a /32 on a veth pair
//     this process creates and deletes; there is no CNI bridge (a loopback-only CNI network,
//     so the runtime reports its network ready), no iptables chains (makeIPTablesUtilChains
//     off), and the kubelet listens on the node address only;
//   - stop leaves the machine as it was: every container is killed, every mount under the
//     node's directory unmounted, the kubelet's cgroups removed, the sysctls the kubelet
//     changes restored, the veth pair deleted — also after a failed start;
//   - a node left behind by a killed run (SIGKILL) is cleaned up by the next start in the
//     same directory.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

const nodeName = "suo-node"

// Sysctls the kubelet sets to its own values (container_manager_linux.go, setupKernelTunables).
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

type node struct {
	dir       string // DIR/node
	iface     string
	ip        string
	sysctls   map[string]string
	cgroup    string // --cgroup-root, under every cgroup v1 hierarchy
	procs     []*exec.Cmd
	socket    string
	linkAdded bool
	stopped   bool
	created   []string // outsidePaths this node created
	lock      net.Listener
}

type nodeOptions struct {
	dir, kubeconfig, pauseBinary string
	images                       []string
	port                         int // the API server's, to name the interface and address
	verbose                      bool
}

// startNode brings up containerd, the kubelet and the scheduler, imports the images and waits
// until the Node is Ready. On error everything started so far is stopped.
func startNode(o nodeOptions, client *http.Client, serverURL string) (n *node, err error) {
	for _, tool := range []string{"containerd", "runc", "ctr", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("--node needs %s: apt-get install containerd runc iproute2 (.ci/install-packages)", tool)
		}
	}
	n = &node{
		dir:    filepath.Join(o.dir, "node"),
		iface:  fmt.Sprintf("suo%d", o.port),
		ip:     fmt.Sprintf("198.18.%d.%d", o.port/256, o.port%256),
		cgroup: fmt.Sprintf("/suo-node-%d", o.port),
	}
	n.socket = filepath.Join(n.dir, "containerd.sock")
	// One node per machine: the kubelet's device-plugin socket is fixed
	// (/var/lib/kubelet/device-plugins). An abstract socket is the lock: the kernel drops it
	// when this process ends, however it ends, and it leaves no file.
	lock, err := net.Listen("unix", "@service-user-operator-local-node")
	if err != nil {
		return nil, errors.New("another local node runs on this machine (one at a time: the kubelet's device-plugin socket is fixed); stop it first")
	}
	n.lock = lock
	n.cleanupStale()
	defer func() {
		if err != nil {
			n.stop()
			n = nil
		}
	}()
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return n, err
	}
	if err := n.addAddress(); err != nil {
		return n, err
	}
	n.saveSysctls()
	n.noteOutside()
	if err := n.makeCgroupRoot(); err != nil {
		return n, err
	}
	if err := n.startContainerd(o.verbose); err != nil {
		return n, err
	}
	pause := filepath.Join(n.dir, "pause.oci.tar")
	if err := writePauseImage(o.pauseBinary, pause); err != nil {
		return n, fmt.Errorf("pause image: %w", err)
	}
	for _, archive := range append([]string{pause}, o.images...) {
		if out, err := exec.Command("ctr", "--address", n.socket, "--namespace", "k8s.io", "images", "import", archive).CombinedOutput(); err != nil {
			return n, fmt.Errorf("importing %s into containerd: %v: %s", archive, err, out)
		}
	}
	if err := n.startKubelet(o); err != nil {
		return n, err
	}
	if err := n.startScheduler(o); err != nil {
		return n, err
	}
	return n, n.waitReady(client, serverURL, 3*time.Minute)
}

func (n *node) addAddress() error {
	// A veth pair, both ends here: the dummy link type is missing from some kernels (these
	// machines'), and a veth with its peer up has a carrier. Deleting one end deletes both.
	peer := n.iface + "p"
	if out, err := exec.Command("ip", "link", "add", n.iface, "type", "veth", "peer", "name", peer).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link add %s type veth: %v: %s", n.iface, err, out)
	}
	n.linkAdded = true
	for _, args := range [][]string{{"addr", "add", n.ip + "/32", "dev", n.iface}, {"link", "set", peer, "up"}, {"link", "set", n.iface, "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// makeCgroupRoot creates the kubelet's --cgroup-root in every cgroup v1 hierarchy (the
// kubelet refuses a root that does not exist); cpuset's needs its CPUs and memory nodes.
func (n *node) makeCgroupRoot() error {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			continue // not a hierarchy
		}
		dir := filepath.Join(h, n.cgroup)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("setting %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// Paths the kubelet and containerd use whatever their flags say (the device plugins' socket,
// shim sockets, fifos): noted before the start, and removed on stop when they were not there.
var outsidePaths = []string{"/var/lib/kubelet", "/run/containerd"}

func (n *node) noteOutside() {
	for _, p := range outsidePaths {
		if _, err := os.Stat(p); err != nil {
			n.created = append(n.created, p)
		}
	}
	b, _ := json.Marshal(n.created)
	_ = os.WriteFile(filepath.Join(n.dir, "created.json"), b, 0o600)
}

func removeCreated(paths []string) {
	for _, p := range paths {
		_ = os.RemoveAll(p)
	}
}

func (n *node) saveSysctls() {
	n.sysctls = map[string]string{}
	for _, s := range kubeletSysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			n.sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	// Written down too, so that the next start restores them after a SIGKILL.
	b, _ := json.Marshal(n.sysctls)
	_ = os.WriteFile(filepath.Join(n.dir, "sysctls.json"), b, 0o600)
}

func (n *node) startContainerd(verbose bool) error {
	cni := filepath.Join(n.dir, "cni")
	if err := os.MkdirAll(cni, 0o700); err != nil {
		return err
	}
	// The runtime reports its network ready once a CNI network is configured; this one only
	// brings up lo in the pod's namespace. Pods here use the host network anyway.
	conflist := `{"cniVersion":"0.4.0","name":"loopback-only","plugins":[{"type":"loopback"}]}`
	if err := os.WriteFile(filepath.Join(cni, "10-loopback.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.10"
  enable_selinux = false
  # No CAP_SYS_RESOURCE on these machines: the negative oom_score_adj of sandboxes (-998)
  # makes runc fail ("can't get final child's PID from pipe"); clamp at containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(n.dir, "containerd"), filepath.Join(n.dir, "containerd-state"), n.socket, n.socket+".ttrpc", filepath.Join(n.dir, "opt"), filepath.Join(n.dir, "runc"), cni)
	path := filepath.Join(n.dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return err
	}
	cmd, err := startProcess("containerd", []string{"--config", path}, filepath.Join(n.dir, "containerd.log"), verbose)
	if err != nil {
		return err
	}
	n.track(cmd)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if exec.Command("ctr", "--address", n.socket, "version").Run() == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("containerd did not answer on %s within 1m (log: %s)", n.socket, filepath.Join(n.dir, "containerd.log"))
}

func (n *node) startKubelet(o nodeOptions) error {
	kubeletPort, err := freePort()
	if err != nil {
		return err
	}
	healthzPort, err := freePort()
	if err != nil {
		return err
	}
	config := map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
		"address": n.ip, "port": kubeletPort, "readOnlyPort": 0,
		"healthzBindAddress": "127.0.0.1", "healthzPort": healthzPort,
		// The API server (logs, exec) presents the admin certificate of the control plane's CA.
		"authentication": map[string]any{"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": false}, "x509": map[string]any{"clientCAFile": filepath.Join(o.dir, "pki", "ca.crt")}},
		"authorization":  map[string]any{"mode": "AlwaysAllow"},
		"cgroupDriver":   "cgroupfs", "cgroupRoot": n.cgroup, "failSwapOn": false,
		"makeIPTablesUtilChains": false, "podLogsDir": filepath.Join(n.dir, "pod-logs"),
		"containerRuntimeEndpoint": "unix://" + n.socket,
		"resolvConf":               "/etc/resolv.conf",
		// A shared test machine: never evict or collect images because of its disks.
		"evictionHard":                map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
		"imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
		"serializeImagePulls": false, "syncFrequency": "10s",
		"fileCheckFrequency": "5s", "nodeStatusReportFrequency": "10s",
	}
	b, _ := json.MarshalIndent(config, "", "  ")
	path := filepath.Join(n.dir, "kubelet.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd, err := startProcess(self, []string{"kubelet",
		"--config=" + path,
		"--kubeconfig=" + o.kubeconfig,
		"--root-dir=" + filepath.Join(n.dir, "kubelet"),
		"--cert-dir=" + filepath.Join(n.dir, "kubelet-pki"),
		"--hostname-override=" + nodeName,
		"--node-ip=" + n.ip,
		"--v=1",
	}, filepath.Join(n.dir, "kubelet.log"), o.verbose)
	if err != nil {
		return err
	}
	n.track(cmd)
	return nil
}

func (n *node) startScheduler(o nodeOptions) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd, err := startProcess(self, []string{"scheduler",
		"--kubeconfig=" + o.kubeconfig,
		"--authentication-kubeconfig=" + o.kubeconfig,
		"--authorization-kubeconfig=" + o.kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--leader-elect=false",
		"--profiling=false",
	}, filepath.Join(n.dir, "scheduler.log"), o.verbose)
	if err != nil {
		return err
	}
	n.track(cmd)
	return nil
}

// waitReady polls the Node until its Ready condition is True.
func (n *node) waitReady(client *http.Client, serverURL string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := "not registered yet"
	for time.Now().Before(deadline) {
		for _, p := range n.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("%s exited (logs in %s)", filepath.Base(p.Path), n.dir)
			}
		}
		resp, err := client.Get(serverURL + "/api/v1/nodes/" + nodeName)
		if err == nil {
			var obj struct {
				Spec struct {
					Taints []struct{ Key string }
				}
				Status struct {
					Conditions []struct{ Type, Status, Message string }
				}
			}
			_ = json.NewDecoder(resp.Body).Decode(&obj)
			resp.Body.Close()
			for _, c := range obj.Status.Conditions {
				if c.Type == "Ready" {
					last = c.Message
					if c.Status == "True" && !tainted(obj.Spec.Taints) {
						return nil
					}
				}
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("node %s not Ready after %s (last: %s; logs in %s)", nodeName, timeout, last, n.dir)
}

// track keeps a started process to stop, and reaps it when it exits (stopProcess polls).
func (n *node) track(cmd *exec.Cmd) {
	n.procs = append(n.procs, cmd)
	go func() { _ = cmd.Wait() }()
}

// tainted: the node still carries the not-ready taint the kubelet registers it with (the
// node lifecycle controller lifts it); no pod without a toleration is scheduled until then.
func tainted(taints []struct{ Key string }) bool {
	for _, t := range taints {
		if t.Key == "node.kubernetes.io/not-ready" {
			return true
		}
	}
	return false
}

// stop undoes everything startNode did, in reverse, whatever state it got to. Once.
func (n *node) stop() {
	if n.stopped {
		return
	}
	n.stopped = true
	if len(n.procs) > 0 {
		// The scheduler and the kubelet first, so that nothing restarts the containers.
		for i := len(n.procs) - 1; i >= 1; i-- {
			stopProcess(n.procs[i])
		}
		killContainers(n.socket)
		stopProcess(n.procs[0])
	}
	unmountUnder(n.dir)
	removeCgroups(n.cgroup)
	removeCreated(n.created)
	restoreSysctls(n.sysctls)
	_ = os.Remove(filepath.Join(n.dir, "sysctls.json"))
	if n.linkAdded {
		_ = exec.Command("ip", "link", "del", n.iface).Run()
	}
	if n.lock != nil {
		_ = n.lock.Close()
	}
}

// killContainers kills every task containerd still runs, so that no shim outlives it.
func killContainers(socket string) {
	out, err := exec.Command("ctr", "--address", socket, "--namespace", "k8s.io", "tasks", "ls", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command("ctr", "--address", socket, "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id).Run()
	}
	for _, id := range strings.Fields(string(out)) {
		for i := 0; i < 50; i++ {
			if exec.Command("ctr", "--address", socket, "--namespace", "k8s.io", "tasks", "delete", id).Run() == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// cleanupStale undoes what a killed run (SIGKILL: no deferred stop) left: its containers
// (every process in its cgroup tree) and shims, mounts, cgroups, sysctls and interface.
func (n *node) cleanupStale() {
	if b, err := os.ReadFile(filepath.Join(n.dir, "sysctls.json")); err == nil {
		var saved map[string]string
		if json.Unmarshal(b, &saved) == nil {
			restoreSysctls(saved)
		}
	}
	if b, err := os.ReadFile(filepath.Join(n.dir, "created.json")); err == nil {
		var created []string
		if json.Unmarshal(b, &created) == nil {
			defer removeCreated(created)
		}
	}
	if out, err := exec.Command("pgrep", "-f", "containerd-shim-runc-v2 .*-address "+n.socket).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", pid).Run()
		}
	}
	procs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", n.cgroup, "*", "cgroup.procs"))
	deeper, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", n.cgroup, "*", "*", "*", "cgroup.procs"))
	deepest, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/pids", n.cgroup, "*", "*", "*", "*", "cgroup.procs"))
	for _, f := range append(append(procs, deeper...), deepest...) {
		if b, err := os.ReadFile(f); err == nil {
			for _, pid := range strings.Fields(string(b)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
	}
	unmountUnder(n.dir)
	removeCgroups(n.cgroup)
	_ = exec.Command("ip", "link", "del", n.iface).Run()
	_ = os.RemoveAll(n.dir)
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 && (fields[1] == dir || strings.HasPrefix(fields[1], dir+"/")) {
			mounts = append(mounts, fields[1])
		}
	}
	// Deepest first; a bind mount of the same path may be there several times.
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	for _, m := range mounts {
		if err := syscall.Unmount(m, 0); err != nil {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// removeCgroups removes the kubelet's cgroup tree (--cgroup-root) from every v1 hierarchy
// and the unified one, deepest first; each is empty once the containers are gone.
func removeCgroups(root string) {
	if root == "" {
		return
	}
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		top := filepath.Join(h, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(dirs[i])
		}
	}
}

func restoreSysctls(saved map[string]string) {
	for s, v := range saved {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(b)) != v {
			_ = os.WriteFile("/proc/sys/"+s, []byte(v), 0o644)
		}
	}
}

// writePauseImage writes an OCI image archive holding only the pause binary as /pause,
// named localhost/pause:3.10 (containerd's sandbox_image above).
func writePauseImage(binary, out string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	if err := tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	diffID := sha256.Sum256(layer.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layer.Bytes()); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	blobs := map[string][]byte{}
	add := func(b []byte) map[string]any {
		d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
		blobs[d] = b
		return map[string]any{"digest": d, "size": len(b)}
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/pause"}, "User": "65535:65535"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{fmt.Sprintf("sha256:%x", diffID)}},
	})
	configDesc, layerDesc := add(config), add(gz.Bytes())
	configDesc["mediaType"] = "application/vnd.oci.image.config.v1+json"
	layerDesc["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
	manifest, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": configDesc, "layers": []any{layerDesc}})
	manifestDesc := add(manifest)
	manifestDesc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	manifestDesc["annotations"] = map[string]string{"io.containerd.image.name": "localhost/pause:3.10", "org.opencontainers.image.ref.name": "3.10"}
	index, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{manifestDesc}})

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	ow := tar.NewWriter(f)
	write := func(name string, b []byte) error {
		if err := ow.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
		_, err := ow.Write(b)
		return err
	}
	if err := write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := write("index.json", index); err != nil {
		return err
	}
	for d, b := range blobs {
		if err := write("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b); err != nil {
			return err
		}
	}
	return errors.Join(ow.Close(), f.Close())
}
