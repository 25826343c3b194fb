package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// clusterVarsConfigMap is the ConfigMap deploy/stamp-config.sh writes and the Flux
// Kustomizations read with postBuild.substituteFrom.
const clusterVarsConfigMap = "bridgehead-cluster-vars"

// needTool returns the path of a tool the tests need. A missing tool fails the test (it never
// skips): scripts/install-deploy-tools.sh installs them, and CI runs it first.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run scripts/install-deploy-tools.sh (%v)", name, err)
	}
	return p
}

// shellScripts lists every shell script of the kit, and the scripts that install its tools.
func shellScripts(t *testing.T) []string {
	t.Helper()
	var scripts []string
	err := filepath.WalkDir(deployDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".sh") {
			scripts = append(scripts, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(scripts, filepath.Join(repoRoot, "scripts", "install-deploy-tools.sh"), filepath.Join(repoRoot, "scripts", "k8s-binaries.sh"))
}

// TestShellcheck runs Debian's shellcheck on every script, following sourced files.
func TestShellcheck(t *testing.T) {
	shellcheck := needTool(t, "shellcheck")
	scripts := shellScripts(t)
	if len(scripts) < 5 {
		t.Fatalf("found only %v", scripts)
	}
	cmd := exec.Command(shellcheck, append([]string{"--external-sources", "--source-path=SCRIPTDIR", "--severity=style"}, scripts...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("shellcheck: %v\n%s", err, out)
	}
	for _, s := range scripts {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "set -euo pipefail") && !strings.HasSuffix(s, "common.sh") {
			t.Errorf("%s: no set -euo pipefail", s)
		}
		if fi, _ := os.Stat(s); !strings.HasSuffix(s, "common.sh") && fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable", s)
		}
	}
}

// runScript runs a kit script with args and env (added to a minimal environment) and returns
// its standard output; it fails the test on a non-zero exit.
func runScript(t *testing.T, script string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, script)}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Stdin = strings.NewReader("")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", script, args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// splitShell splits one line of `printf %q` output into words.
func splitShell(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && i+1 < len(line):
			cur.WriteByte(line[i+1])
			i++
			inWord = true
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated quote in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// azCall is one az command line of a dry run: the command path and its --flags.
type azCall struct {
	line    string
	command []string // e.g. ["aks", "create"]
	flags   []string // e.g. ["--name", "--attach-acr"]
	args    []string // every word after "az"
}

// azCalls parses the az command lines of a dry run's output. Lines may be pipelines
// (`az ... | kubectl ...`); only the az part is taken.
func azCalls(t *testing.T, out string) []azCall {
	t.Helper()
	var calls []azCall
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "az ") {
			continue
		}
		words, err := splitShell(line)
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.Index(words, "|"); i >= 0 {
			words = words[:i]
		}
		c := azCall{line: line, args: words[1:]}
		for _, w := range words[1:] {
			if strings.HasPrefix(w, "-") {
				break
			}
			c.command = append(c.command, w)
		}
		for _, w := range words[1:] {
			if strings.HasPrefix(w, "-") {
				c.flags = append(c.flags, w)
			}
		}
		calls = append(calls, c)
	}
	return calls
}

// flagValue returns the word after flag in c, or "".
func (c azCall) flagValue(flag string) string {
	if i := slices.Index(c.args, flag); i >= 0 && i+1 < len(c.args) {
		return c.args[i+1]
	}
	return ""
}

// valuesAfter returns the words before the next flag.
func valuesAfter(words []string) []string {
	for i, w := range words {
		if strings.HasPrefix(w, "-") {
			return words[:i]
		}
	}
	return words
}

func (c azCall) is(command string) bool { return strings.Join(c.command, " ") == command }

// provisionEnv is the environment of the full dry run: both stamps, the on-prem cluster
// reachable.
var provisionEnv = []string{
	"ARC_CLUSTER_NAME=hci-aks", "ARC_RESOURCE_GROUP=hci-rg", "ONPREM_CONTEXT=hci-aks",
	"NFS_SERVER=nfs.example.internal", "AUTH_FILE=auth.yaml",
	"TLS_CERT_FILE=tls.crt", "TLS_KEY_FILE=tls.key", "ONPREM_HOST=onprem.example.com",
	"FAILOVER_HOST=ingest.example.com",
}

var (
	provisionOnce sync.Once
	provisionOut  string
)

func provisionDryRun(t *testing.T) string {
	t.Helper()
	provisionOnce.Do(func() { provisionOut = runScript(t, "azure/provision.sh", provisionEnv, "--dry-run") })
	if provisionOut == "" {
		t.Fatal("provision dry run failed")
	}
	return provisionOut
}

// TestProvisionDryRunCoversTheSeed checks that the dry run creates what the seed lists:
// resource group, ACR, Event Hubs (Standard, hub, send-only policy), storage + file share,
// AKS with the ACR attached and workload identity, Flux on the AKS and the Arc cluster.
func TestProvisionDryRunCoversTheSeed(t *testing.T) {
	out := provisionDryRun(t)
	calls := azCalls(t, out)
	find := func(command string, match func(azCall) bool) {
		t.Helper()
		for _, c := range calls {
			if c.is(command) && (match == nil || match(c)) {
				return
			}
		}
		t.Errorf("dry run lacks az %s (with the expected flags)", command)
	}
	has := func(flags ...string) func(azCall) bool {
		return func(c azCall) bool {
			for _, f := range flags {
				if !slices.Contains(c.flags, f) {
					return false
				}
			}
			return true
		}
	}
	val := func(flag, want string) func(azCall) bool {
		return func(c azCall) bool { return c.flagValue(flag) == want }
	}
	find("group create", nil)
	find("acr create", val("--admin-enabled", "false"))
	find("eventhubs namespace create", val("--sku", "Standard"))
	find("eventhubs eventhub create", has("--partition-count"))
	find("eventhubs eventhub authorization-rule create", func(c azCall) bool {
		i := slices.Index(c.args, "--rights")
		return i >= 0 && slices.Equal(valuesAfter(c.args[i+1:]), []string{"Send"})
	})
	// Zone-redundant by default: the AKS cluster spans three zones.
	find("storage account create", val("--sku", "Premium_ZRS"))
	find("storage share-rm create", val("--enabled-protocols", "SMB"))
	find("aks create", has("--attach-acr", "--enable-oidc-issuer", "--enable-workload-identity", "--network-policy"))
	find("aks create", val("--enable-addons", "ingress-appgw"))
	find("identity federated-credential create", val("--subject", "system:serviceaccount:bridgehead:bridgehead-forwarder"))
	find("role assignment create", val("--role", "Azure Event Hubs Data Sender"))
	find("acr token create", val("--scope-map", "_repositories_pull"))
	for _, clusterType := range []string{"managedClusters", "connectedClusters"} {
		find("k8s-extension create", func(c azCall) bool {
			return c.flagValue("--cluster-type") == clusterType && c.flagValue("--extension-type") == "microsoft.flux"
		})
		stamp := map[string]string{"managedClusters": "cloud", "connectedClusters": "onprem"}[clusterType]
		find("k8s-configuration flux create", func(c azCall) bool {
			return c.flagValue("--cluster-type") == clusterType && slices.Contains(c.args, "path=./deploy/flux/clusters/"+stamp)
		})
	}

	// Every create is preceded by the show that makes it idempotent.
	checkIdempotent(t, calls)
	// Secrets never appear on a command line.
	if strings.Contains(out, "--docker-password") || strings.Contains(out, "--from-literal=connection") {
		t.Error("a secret is passed on a command line")
	}
	// Both stamps' cluster values are written.
	for _, stamp := range Stamps {
		if !strings.Contains(out, "create configmap "+clusterVarsConfigMap) {
			t.Errorf("no %s for %s", clusterVarsConfigMap, stamp)
		}
	}
}

// TestProvisionTrafficManager checks the DNS failover for clients that cannot fail over
// themselves: with ONPREM_HOST, a Traffic Manager profile with priority routing that probes
// /readyz over HTTPS on 443, on-prem (priority 1) before the cloud stamp's ingress (priority
// 2), both external endpoints; without ONPREM_HOST, no profile.
func TestProvisionTrafficManager(t *testing.T) {
	// The cloud ingress must answer the name clients reach through Traffic Manager.
	if out := provisionDryRun(t); !strings.Contains(out, "--from-literal=FAILOVER_HOST=ingest.example.com") {
		t.Error("FAILOVER_HOST is not passed on to the cloud stamp's cluster values")
	}
	calls := azCalls(t, provisionDryRun(t))
	var profiles, endpoints []azCall
	for _, c := range calls {
		switch {
		case c.is("network traffic-manager profile create"):
			profiles = append(profiles, c)
		case c.is("network traffic-manager endpoint create"):
			endpoints = append(endpoints, c)
		}
	}
	if len(profiles) != 1 {
		t.Fatalf("got %d az network traffic-manager profile create, want 1", len(profiles))
	}
	p := profiles[0]
	for flag, want := range map[string]string{
		"--routing-method": "Priority", "--protocol": "HTTPS", "--port": "443", "--path": "/readyz",
		"--ttl": "30", "--interval": "10", "--resource-group": "bridgehead-rg", "--unique-dns-name": "bridgehead",
	} {
		if got := p.flagValue(flag); got != want {
			t.Errorf("profile create %s: got %q, want %q", flag, got, want)
		}
	}
	// Traffic Manager allows a timeout of 5-9 s with fast (10 s) probing.
	if n, err := strconv.Atoi(p.flagValue("--timeout")); err != nil || n < 5 || n > 9 {
		t.Errorf("profile create --timeout: got %q, want 5-9 with --interval 10", p.flagValue("--timeout"))
	}
	type endpoint struct{ name, target, priority string }
	var got []endpoint
	for _, e := range endpoints {
		if e.flagValue("--profile-name") != p.flagValue("--name") || e.flagValue("--type") != "externalEndpoints" {
			t.Errorf("%q: want an external endpoint of profile %s", e.line, p.flagValue("--name"))
		}
		got = append(got, endpoint{e.flagValue("--name"), e.flagValue("--target"), e.flagValue("--priority")})
	}
	want := []endpoint{{"onprem", "onprem.example.com", "1"}, {"cloud", "api.bridgehead.example.com", "2"}}
	if !slices.Equal(got, want) {
		t.Errorf("endpoints: got %v, want %v", got, want)
	}

	env := slices.DeleteFunc(slices.Clone(provisionEnv), func(kv string) bool { return strings.HasPrefix(kv, "ONPREM_HOST=") })
	out := runScript(t, "azure/provision.sh", env, "--dry-run", "--stamp", "cloud")
	if strings.Contains(out, "traffic-manager") {
		t.Error("without ONPREM_HOST the dry run still creates a Traffic Manager profile")
	}
	if !strings.Contains(out, "ONPREM_HOST is not set") {
		t.Error("without ONPREM_HOST the dry run does not say why there is no Traffic Manager profile")
	}
}

// TestProvisionTeardown checks the teardown: it needs --yes, and deletes the Flux
// configuration and the resource group, never the Arc cluster.
func TestProvisionTeardown(t *testing.T) {
	out := runScript(t, "azure/provision.sh", provisionEnv, "--dry-run", "--teardown")
	calls := azCalls(t, out)
	var cmds []string
	for _, c := range calls {
		cmds = append(cmds, strings.Join(c.command, " "))
		if c.is("connectedk8s delete") || c.is("aks delete") && c.flagValue("--name") == "hci-aks" {
			t.Errorf("teardown deletes the on-prem cluster: %s", c.line)
		}
	}
	for _, want := range []string{"k8s-configuration flux delete", "group delete"} {
		if !slices.Contains(cmds, want) {
			t.Errorf("teardown lacks az %s; has %v", want, cmds)
		}
	}
	cmd := exec.Command("bash", filepath.Join(deployDir, "azure/provision.sh"), "--teardown")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, provisionEnv...)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--yes") {
		t.Errorf("--teardown without --yes: err %v, output %q; want a refusal naming --yes", err, out)
	}
}

// azExtensionFlags lists, for commands of az CLI extensions (which cannot be installed
// offline, so `--help` cannot be asked), the flags the scripts may use, as documented in the
// extensions' reference on learn.microsoft.com (cli/azure/k8s-configuration/flux,
// cli/azure/k8s-extension, cli/azure/connectedk8s). The versions are the extension releases
// that made the commands GA; provision.sh installs the newest with az extension add --upgrade.
var azExtensionFlags = map[string]struct {
	since string
	flags []string
}{
	"k8s-configuration flux create": {"k8s-configuration 1.4.0 (Flux v2 GA, 2022)", []string{
		"--cluster-type", "--cluster-name", "--resource-group", "--name", "--namespace", "--scope",
		"--url", "--branch", "--interval", "--kustomization",
		// k8s-configuration 1.5.0: a Secret in the configuration's namespace as the source's
		// credentials (fluxConfigurations' gitRepository.localAuthRef).
		"--local-auth-ref"}},
	"k8s-configuration flux show":   {"k8s-configuration 1.4.0", []string{"--cluster-type", "--cluster-name", "--resource-group", "--name"}},
	"k8s-configuration flux delete": {"k8s-configuration 1.4.0", []string{"--cluster-type", "--cluster-name", "--resource-group", "--name", "--yes"}},
	"k8s-extension create": {"k8s-extension 1.0.0", []string{
		"--cluster-type", "--cluster-name", "--resource-group", "--name", "--extension-type", "--scope",
		// The extension's settings, e.g. Microsoft.AzureMonitor.Containers.Metrics'
		// azure-monitor-workspace-resource-id=... (learn.microsoft.com, "Enable Prometheus and
		// Grafana" for Arc-enabled clusters).
		"--configuration-settings"}},
	"k8s-extension show":   {"k8s-extension 1.0.0", []string{"--cluster-type", "--cluster-name", "--resource-group", "--name"}},
	"k8s-extension delete": {"k8s-extension 1.0.0", []string{"--cluster-type", "--cluster-name", "--resource-group", "--name", "--yes"}},
	// A further Kustomization of an existing Flux configuration (az k8s-configuration flux
	// kustomization create -h, in Microsoft's "GitOps Flux v2 configurations" tutorial).
	"k8s-configuration flux kustomization create": {"k8s-configuration 1.4.0", []string{
		"--cluster-type", "--cluster-name", "--resource-group", "--name", "--kustomization-name", "--path",
		"--prune", "--depends-on"}},
	"k8s-configuration flux kustomization show": {"k8s-configuration 1.4.0", []string{
		"--cluster-type", "--cluster-name", "--resource-group", "--name", "--kustomization-name"}},
	"connectedk8s show": {"connectedk8s 1.0.0", []string{"--name", "--resource-group"}},
}

// azNewerFlags lists flags of core az commands that the Debian azure-cli 2.45 does not know
// yet, with the release that added them (from the azure-cli release notes). A newer CLI (as on
// GitHub's runners) knows them; the check then holds the scripts to that CLI instead.
var azNewerFlags = map[string]map[string]string{
	"aks create": {"--enable-workload-identity": "2.47.0 (workload identity GA, April 2023)"},
	// Azure Monitor managed Prometheus, in aks-preview before; the core CLI after 2.45 (2023).
	"aks update": {
		"--enable-azure-monitor-metrics":        "a core release after 2.45 (managed Prometheus GA, 2023)",
		"--azure-monitor-workspace-resource-id": "a core release after 2.45 (managed Prometheus GA, 2023)",
		"--grafana-resource-id":                 "a core release after 2.45 (managed Prometheus GA, 2023)",
	},
}

// azFallbackProfile is the API profile under which `az network ... --help` is asked again when
// it fails under the default one. Debian's azure-cli 2.45 cannot load its network module under
// the latest profile (every network command dies with "'NoneType' object has no attribute
// 'standard_medium'": the packaged azure-mgmt-network lacks the API version 2022-01-01 that the
// profile names); under this profile (network API 2018-11-01, which the package has) it loads,
// and the traffic-manager commands, which use their own API, take the same flags.
const azFallbackProfile = "2020-09-01-hybrid"

// azUnhelpedFlags lists, for the core commands whose help Debian's azure-cli 2.45 prints under
// neither profile (the network module's AAZ "show" commands are registered for the latest
// profile only), the flags the scripts may use, as the CLI's own source declares them
// (azure/cli/command_modules/network/aaz/latest/network/traffic_manager/*/_show.py of 2.45)
// and learn.microsoft.com/cli/azure/network/traffic-manager documents them. A CLI that prints
// their help is held to its help instead.
var azUnhelpedFlags = map[string][]string{
	"network traffic-manager profile show":  {"--name", "--profile-name", "--resource-group", "--ids"},
	"network traffic-manager endpoint show": {"--name", "--profile-name", "--resource-group", "--type", "--ids"},
}

// azGlobalFlags are accepted by every az command.
var azGlobalFlags = []string{"--debug", "--help", "--only-show-errors", "--output", "--query", "--subscription", "--verbose"}

// azFlagRe finds the flags an `az ... --help` text documents (first column of its argument
// tables, aliases included).
var azFlagRe = regexp.MustCompile(`(?m)^ {4}(--[a-z0-9-]+(?: +--?[a-zA-Z0-9-]+)*)`)

// TestAzCommandsExist checks every az command the dry runs print against the Debian azure-cli:
// the command must exist (`az <cmd> --help` succeeds) and take every flag used. Extension
// commands are checked against azExtensionFlags.
func TestAzCommandsExist(t *testing.T) {
	az := needTool(t, "az")
	out := provisionDryRun(t) + runScript(t, "azure/provision.sh", provisionEnv, "--dry-run", "--teardown") +
		runScript(t, "azure/provision.sh", azmonEnv, "--dry-run", "--azure-monitor") +
		runScript(t, "azure/provision.sh", azmonEnv, "--dry-run", "--teardown", "--azure-monitor")
	calls := azCalls(t, out)
	byCommand := map[string][]azCall{}
	for _, c := range calls {
		for _, f := range c.flags {
			if !strings.HasPrefix(f, "--") {
				t.Errorf("%q: short flag %s: the scripts use long flags", c.line, f)
			}
		}
		k := strings.Join(c.command, " ")
		byCommand[k] = append(byCommand[k], c)
	}
	if len(byCommand) < 20 {
		t.Fatalf("only %d distinct az commands in the dry run", len(byCommand))
	}

	// Ask the CLI for each core command's help, two at a time (2 cores).
	type result struct {
		flags []string
		err   error
		out   string
	}
	helps := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	cfg := azConfigDir(t)
	fallback := sync.OnceValues(func() (string, error) { return azProfileConfigDir(az, cfg+"-"+azFallbackProfile, azFallbackProfile) })
	help := func(cfg, k string) result {
		cmd := exec.Command(az, append(strings.Fields(k), "--help")...)
		cmd.Env = append(os.Environ(), "AZURE_CONFIG_DIR="+cfg, "AZURE_CORE_COLLECT_TELEMETRY=0",
			"AZURE_CORE_NO_COLOR=1", "AZURE_EXTENSION_DIR="+filepath.Join(cfg, "cliextensions"))
		b, err := cmd.CombinedOutput()
		var flags []string
		for _, m := range azFlagRe.FindAllStringSubmatch(string(b), -1) {
			flags = append(flags, strings.Fields(m[1])...)
		}
		return result{flags: flags, err: err, out: string(b)}
	}
	for k := range byCommand {
		if _, ext := azExtensionFlags[k]; ext {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			h := help(cfg, k)
			if (h.err != nil || len(h.flags) == 0) && strings.HasPrefix(k, "network ") {
				if dir, err := fallback(); err != nil {
					h.out += "\n(and under profile " + azFallbackProfile + ": " + err.Error() + ")"
				} else if h2 := help(dir, k); h2.err == nil && len(h2.flags) > 0 {
					h = h2
				}
			}
			mu.Lock()
			helps[k] = h
			mu.Unlock()
		}()
	}
	wg.Wait()

	for k, cs := range byCommand {
		var known []string
		if ext, ok := azExtensionFlags[k]; ok {
			known = ext.flags
		} else {
			h := helps[k]
			if documented, ok := azUnhelpedFlags[k]; ok && (h.err != nil || len(h.flags) == 0) {
				t.Logf("az %s --help fails in this CLI; its flags are checked against azUnhelpedFlags", k)
				h = result{flags: documented}
			}
			if h.err != nil || len(h.flags) == 0 {
				t.Errorf("az %s --help: %v (the command does not exist in azure-cli 2.45?)\n%s", k, h.err, firstLines(h.out, 5))
				continue
			}
			known = h.flags
			for f, since := range azNewerFlags[k] {
				if !slices.Contains(h.flags, f) {
					t.Logf("az %s %s: not in this CLI; allowed as added in %s", k, f, since)
				}
				known = append(known, f)
			}
		}
		known = append(known, azGlobalFlags...)
		for _, c := range cs {
			for _, f := range c.flags {
				if !slices.Contains(known, f) {
					t.Errorf("az %s has no flag %s (line %q)", k, f, c.line)
				}
			}
		}
	}
}

// azConfigDir is a private az configuration directory, kept between runs so that the CLI's
// command index is built once.
func azConfigDir(t *testing.T) string {
	t.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		return t.TempDir()
	}
	dir := filepath.Join(base, "bridgehead-deploy-test", "azure")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return t.TempDir()
	}
	return dir
}

// azProfileConfigDir returns an az configuration directory, kept between runs like
// azConfigDir's, whose cloud uses the API profile profile.
func azProfileConfigDir(az, dir, profile string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if b, err := os.ReadFile(filepath.Join(dir, "clouds.config")); err == nil && strings.Contains(string(b), "profile = "+profile) {
		return dir, nil
	}
	cmd := exec.Command(az, "cloud", "update", "--profile", profile)
	cmd.Env = append(os.Environ(), "AZURE_CONFIG_DIR="+dir, "AZURE_CORE_COLLECT_TELEMETRY=0", "AZURE_CORE_NO_COLOR=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("az cloud update --profile %s: %v\n%s", profile, err, out)
	}
	return dir, nil
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// stampConfigArgs are sample arguments of deploy/stamp-config.sh per stamp: the stamps the
// tests render (loadStamps) are configured with these. The cloud stamp's include the
// Traffic Manager name (--failover-host); stampConfigNoFailover are the same without it.
var stampConfigArgs = map[string][]string{
	"onprem": {"--stamp", "onprem", "--acr-login-server", "bridgeheadacr.azurecr.io", "--nfs-server", "192.0.2.10",
		"--eventhubs-connection-string-file", "-", "--auth-file", "auth.yaml", "--tls-cert-file", "tls.crt", "--tls-key-file", "tls.key"},
	"cloud": append(slices.Clone(stampConfigNoFailover), "--failover-host", sampleFailoverHost),
}

// sampleAPIHost and sampleFailoverHost are the cloud stamp's sample host names.
const (
	sampleAPIHost      = "api.example.com"
	sampleFailoverHost = "ingest.example.com"
)

// stampConfigNoFailover are the cloud stamp's sample arguments without --failover-host.
var stampConfigNoFailover = []string{"--stamp", "cloud", "--acr-login-server", "bridgeheadacr.azurecr.io", "--eventhubs-namespace", "bridgehead-ehns",
	"--resource-group", "bridgehead-rg", "--storage-account", "bridgeheadspool", "--file-share", "spool",
	"--client-id", "00000000-0000-0000-0000-000000000000", "--api-host", sampleAPIHost, "--auth-file", "auth.yaml",
	"--tls-cert-file", "ingress.crt", "--tls-key-file", "ingress.key"}

var (
	stampConfigMu  sync.Mutex
	stampConfigOut = map[string]string{}
)

// stampConfigDryRun runs deploy/stamp-config.sh --dry-run with args (once per distinct args)
// and returns its standard output.
func stampConfigDryRun(args []string) (string, error) {
	stampConfigMu.Lock()
	defer stampConfigMu.Unlock()
	key := strings.Join(args, "\x00")
	if out, ok := stampConfigOut[key]; ok {
		return out, nil
	}
	cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, "stamp-config.sh"), "--dry-run"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("stamp-config.sh --dry-run %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	stampConfigOut[key] = stdout.String()
	return stdout.String(), nil
}

// stampConfigKeys returns the keys (with the sample values) that deploy/stamp-config.sh, run
// with args, writes into the cluster-vars ConfigMap, read from its dry run.
func stampConfigKeys(args []string) (map[string]string, error) {
	out, err := stampConfigDryRun(args)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "create configmap "+clusterVarsConfigMap) {
			continue
		}
		words, err := splitShell(line)
		if err != nil {
			return nil, err
		}
		for _, w := range words {
			if kv, ok := strings.CutPrefix(w, "--from-literal="); ok {
				k, v, _ := strings.Cut(kv, "=")
				keys[k] = v
			}
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("stamp-config.sh %s writes no %s", strings.Join(args, " "), clusterVarsConfigMap)
	}
	return keys, nil
}

// TestStampConfigWritesWhatTheStampNeeds checks the Secrets each stamp's pods mount are the
// ones deploy/stamp-config.sh (and registry-secret.sh) write.
func TestStampConfigWritesWhatTheStampNeeds(t *testing.T) {
	stamps := loadStamps(t)
	for _, name := range Stamps {
		out, err := stampConfigDryRun(stampConfigArgs[name])
		if err != nil {
			t.Fatal(err)
		}
		if name == "onprem" {
			out += runScript(t, "onprem/registry-secret.sh", nil, "--dry-run", "--server", "x.azurecr.io", "--username", "pull")
		}
		ts := typedObjects(t, stamps[name].objs)
		for _, d := range ts.deployments {
			var secrets []string
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Secret != nil {
					secrets = append(secrets, v.Secret.SecretName)
				}
			}
			for _, p := range d.Spec.Template.Spec.ImagePullSecrets {
				secrets = append(secrets, p.Name)
			}
			// The ingress's certificate, which the Application Gateway needs.
			for _, o := range stamps[name].objs {
				if o.GetKind() == "Ingress" {
					tls, _, _ := unstructured.NestedSlice(o.Object, "spec", "tls")
					for _, e := range tls {
						if s, _ := e.(map[string]any)["secretName"].(string); s != "" {
							secrets = append(secrets, s)
						}
					}
				}
			}
			for _, s := range secrets {
				if !regexp.MustCompile(`create secret [a-z-]+ ` + regexp.QuoteMeta(s) + ` `).MatchString(out) {
					t.Errorf("stamp %s: %s needs Secret %s, which no script writes", name, d.Name, s)
				}
			}
		}
	}
}

// TestStampConfigRefusesBadHosts checks deploy/stamp-config.sh refuses what would make an
// Ingress the API server rejects, or a name the ingress cannot answer: an --api-host or
// --failover-host that is not a lowercase DNS name, and --failover-host for the on-prem stamp
// (its certificate is the operator's, docs/failover.md).
func TestStampConfigRefusesBadHosts(t *testing.T) {
	with := func(base []string, flag, value string) []string {
		args := slices.Clone(base)
		if i := slices.Index(args, flag); i >= 0 {
			args[i+1] = value
			return args
		}
		return append(args, flag, value)
	}
	var cases [][]string
	for _, h := range []string{"Ingest.example.com", "192.0.2.1", "*.example.com", "-ingest.example.com", "ingest..example.com",
		"ingest.example.com.", "ingest_1.example.com", strings.Repeat("a", 64) + ".example.com", "ingest example.com"} {
		cases = append(cases, with(stampConfigNoFailover, "--failover-host", h), with(stampConfigNoFailover, "--api-host", h))
	}
	cases = append(cases, with(stampConfigArgs["onprem"], "--failover-host", sampleFailoverHost))
	for _, args := range cases {
		cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, "stamp-config.sh"), "--dry-run"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "error: ") {
			t.Errorf("stamp-config.sh %v: err %v, output %q; want a refusal", args, err, out)
		}
	}
	// A name of 253 characters in labels of 63 is a DNS name.
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 61)
	if _, err := stampConfigDryRun(with(stampConfigNoFailover, "--failover-host", long)); err != nil {
		t.Errorf("a %d-character name: %v", len(long), err)
	}
}

// TestNFSSetupDryRun checks the NFS server script does what production needs: an export
// limited to the cluster's subnet, sync, root_squash, NFSv4.1, owned by the image's UID, a
// firewall; and refuses to run without a subnet.
func TestNFSSetupDryRun(t *testing.T) {
	out := runScript(t, "nfs/setup-nfs-server.sh", nil, "--dry-run", "--client-cidr", "192.168.10.0/24")
	for _, want := range []string{
		`"/srv/bridgehead/spool" 192.168.10.0/24(rw,sync,root_squash,no_subtree_check,sec=sys)`,
		fmt.Sprintf("install -d -m 0770 -o %d -g %d /srv/bridgehead/spool", nonrootUID, nonrootUID),
		"nfsconf --set nfsd vers4.1 y",
		"nfsconf --set nfsd vers3 n",
		"ufw allow from 192.168.10.0/24 to any port 2049 proto tcp",
		"ufw default deny incoming",
		"exportfs -ra",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	for _, bad := range []string{"no_root_squash", "async", "insecure", "*(rw"} {
		if strings.Contains(out, bad) {
			t.Errorf("dry run contains %q", bad)
		}
	}
	for _, args := range [][]string{{"--dry-run"}, {"--dry-run", "--client-cidr", "0.0.0.0/0"}, {"--dry-run", "--client-cidr", "*"}} {
		cmd := exec.Command("bash", append([]string{filepath.Join(deployDir, "nfs/setup-nfs-server.sh")}, args...)...)
		if err := cmd.Run(); err == nil {
			t.Errorf("setup-nfs-server.sh %v succeeded; want a refusal", args)
		}
	}
	// The export path matches the default the on-prem PersistentVolume uses.
	s := loadStamps(t)["onprem"]
	ts := typedObjects(t, s.objs)
	for _, pv := range ts.pvs {
		if pv.Spec.NFS != nil && pv.Spec.NFS.Path != "/srv/bridgehead/spool" {
			t.Errorf("PersistentVolume %s path %s, the NFS script exports /srv/bridgehead/spool", pv.Name, pv.Spec.NFS.Path)
		}
	}
}

// TestRegistrySecretDryRun checks the pull secret script reads the password from stdin and
// writes the secret the on-prem overlay names.
func TestRegistrySecretDryRun(t *testing.T) {
	out := runScript(t, "onprem/registry-secret.sh", nil, "--dry-run", "--server", "x.azurecr.io", "--username", "pull", "--context", "hci")
	for _, want := range []string{"create secret generic bridgehead-acr-pull", "--type=kubernetes.io/dockerconfigjson", "--from-file=.dockerconfigjson=/dev/stdin", "--context hci"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
}

// provisionSetting returns the value deploy/azure/provision.sh assigns to one of its fixed
// names (NAME=value or NAME="value" at the start of a line).
func provisionSetting(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "azure", "provision.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `="?([^"\s]+)"?`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("provision.sh assigns no %s", name)
	}
	return string(m[1])
}
