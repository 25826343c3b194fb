// Package k8stest runs a real Kubernetes control plane for tests: etcd and kube-apiserver as
// child processes, listening on 127.0.0.1 only, with throwaway certificates and service-account
// keys, RBAC authorization and the API server's default admission plugins (PodSecurity among
// them). No scheduler, controller-manager or kubelet runs: objects are stored, validated,
// admitted and authorized exactly as on a cluster, but nothing reconciles them.
//
// The binaries come from scripts/k8s-binaries.sh (make test-k8s): kube-apiserver built from the
// Go module proxy, etcd from Debian's etcd-server package. BinDirEnv names the directory that
// holds both; a missing directory or binary is an error, never a skip.
package k8stest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BinDirEnv is the environment variable that names the directory holding the etcd and
// kube-apiserver binaries (scripts/k8s-binaries.sh prints it).
const BinDirEnv = "BRIDGEHEAD_K8S_BIN_DIR"

// Cluster is a running control plane, owned by the test that started it.
type Cluster struct {
	// Dir holds the data, certificates and logs (etcd.log, kube-apiserver.log).
	Dir string
	// Host is the API server's URL, https://127.0.0.1:<port>.
	Host string

	pki   *pki
	procs []*exec.Cmd
	logs  []*os.File
}

// Start starts etcd and kube-apiserver with their files in a directory of the test's and
// returns once the API server reports ready (within a minute). It fails the test on error, and
// stops both when the test ends, after logging the API server's last lines if the test failed.
// Call it from the test's goroutine.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bin := os.Getenv(BinDirEnv)
	if bin == "" {
		t.Fatalf("%s is not set: run `make test-k8s`, which builds the binaries (scripts/k8s-binaries.sh)", BinDirEnv)
	}
	etcd, apiserver := filepath.Join(bin, "etcd"), filepath.Join(bin, "kube-apiserver")
	for _, b := range []string{etcd, apiserver} {
		if fi, err := os.Stat(b); err != nil || fi.Mode()&0o111 == 0 {
			t.Fatalf("%s: not an executable (%v): run scripts/k8s-binaries.sh", b, err)
		}
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir, pki: newPKI(t, dir)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log tail:\n%s", c.logTail("kube-apiserver", 1500))
		}
		c.stop()
	})
	if err := c.start(t.Context(), etcd, apiserver); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Cluster) start(ctx context.Context, etcd, apiserver string) error {
	p := c.pki
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])

	if err := c.run(etcd, "etcd",
		"--name=k8stest",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=k8stest="+etcdPeer,
	); err != nil {
		return err
	}
	if err := c.run(apiserver, "kube-apiserver",
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(c.Dir, "apiserver-certs"),
		"--tls-cert-file="+p.serverCertFile,
		"--tls-private-key-file="+p.serverKeyFile,
		"--client-ca-file="+p.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPubFile,
		"--service-account-signing-key-file="+p.saKeyFile,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// PodSecurity is on by default; naming it makes the test's premise explicit.
		"--enable-admission-plugins=PodSecurity",
		// As on AKS: privileged pods are allowed by the API server, so that refusing one is
		// Pod Security's doing.
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	); err != nil {
		return err
	}
	return c.waitReady(ctx)
}

func (c *Cluster) run(bin, name string, args ...string) error {
	log, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	c.logs = append(c.logs, log)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = c.Dir
	// The child dies with the test binary even when the test is killed before Stop runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// waitReady polls the API server's /readyz until it answers 200.
func (c *Cluster) waitReady(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.Admin())
	if err != nil {
		return err
	}
	err = poll(ctx, time.Minute, func() (bool, error) {
		for _, p := range c.procs {
			if p.ProcessState != nil {
				return true, fmt.Errorf("%s exited", p.Path)
			}
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return false, fmt.Errorf("%w: %s", err, body)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kube-apiserver not ready (logs in %s): %w", c.Dir, err)
	}
	return nil
}

// poll calls cond every 100 ms until it reports done, and returns its error then; after
// timeout (or when ctx ends) it returns the timeout with cond's last error.
func poll(ctx context.Context, timeout time.Duration, cond func() (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := cond()
		if done {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Admin returns a client configuration with the rights of cluster-admin (group
// system:masters), as the person who installs the cluster.
func (c *Cluster) Admin() *rest.Config {
	return &rest.Config{
		Host: c.Host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.pki.caPEM,
			CertData: c.pki.adminCertPEM,
			KeyData:  c.pki.adminKeyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
}

// As returns a client configuration that impersonates the service account namespace/name, as
// Flux's kustomize-controller does for a Kustomization's spec.serviceAccountName (or its
// --default-service-account). The API server adds the account's groups.
func (c *Cluster) As(namespace, name string) *rest.Config {
	cfg := c.Admin()
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":" + name}
	return cfg
}

// stop kills the API server and etcd and waits for them.
func (c *Cluster) stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.Process != nil && p.ProcessState == nil {
			_ = p.Process.Kill()
			_ = p.Wait() // killed: the exit status says nothing
		}
	}
	c.procs = nil
	for _, l := range c.logs {
		_ = l.Close() // a log's tail is only for reading after a failure
	}
	c.logs = nil
}

// logTail returns the last n bytes of a component's log ("etcd" or "kube-apiserver").
func (c *Cluster) logTail(name string, n int64) string {
	f, err := os.Open(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
