package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
)

// envName returns the environment variable that sets flag name: BRIDGEHEAD_<NAME>, dashes as
// underscores.
func envName(flag string) string {
	return "BRIDGEHEAD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// isSecret reports whether f is a secret flag (annotated secretAnnotation); f may be nil.
func isSecret(f *pflag.Flag) bool {
	if f == nil {
		return false
	}
	_, ok := f.Annotations[secretAnnotation]
	return ok
}

// applyEnv sets every flag of fs that was not given on the command line from its environment
// variable, if set. Precedence: flag, then environment, then default. A secret flag (annotated
// secretAnnotation) may instead name a file in BRIDGEHEAD_<FLAG>_FILE, whose content (without a
// trailing newline) is the value. A bad value names the variable, never a secret's value.
//
// A secret flag's companion <flag>-file (send's --api-key-file) is the command-line form of
// BRIDGEHEAD_<FLAG>_FILE, so that variable sets the secret, not the companion; and a companion
// given on the command line beats the secret's environment.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		if base, ok := strings.CutSuffix(f.Name, "-file"); ok && isSecret(fs.Lookup(base)) {
			return
		}
		secret := isSecret(f)
		if file := fs.Lookup(f.Name + "-file"); secret && file != nil && file.Changed {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok && secret {
			if path, fok := os.LookupEnv(name + "_FILE"); fok {
				b, rerr := os.ReadFile(path)
				if rerr != nil {
					err = fmt.Errorf("%s_FILE: %w", name, rerr)
					return
				}
				v, ok, name = strings.TrimRight(string(b), "\r\n"), true, name+"_FILE"
			}
		}
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			if secret {
				err = fmt.Errorf("%s: invalid value", name)
			} else {
				err = fmt.Errorf("%s=%q: %w", name, v, serr)
			}
		}
	})
	return err
}

// byteSize is a flag value in bytes that accepts units: 512, 64KiB, 10MiB, 2GiB, 1TiB (and KB,
// MB, GB, TB as powers of 1000).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Type() string { return "bytes" }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// bytesOrPercent is a flag value that is either a size in bytes (as byteSize) or a percentage
// ("5%").
type bytesOrPercent struct {
	bytes   int64
	percent float64
}

func (b *bytesOrPercent) String() string {
	if b.bytes > 0 {
		return strconv.FormatInt(b.bytes, 10)
	}
	return strconv.FormatFloat(b.percent, 'g', -1, 64) + "%"
}

func (b *bytesOrPercent) Type() string { return "bytes|percent" }

func (b *bytesOrPercent) Set(s string) error {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v > 50 {
			return fmt.Errorf("%q: a percentage from 0%% to 50%%", s)
		}
		*b = bytesOrPercent{percent: v}
		return nil
	}
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = bytesOrPercent{bytes: n}
	return nil
}

func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToLower(t), strings.ToLower(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a byte size (e.g. 1048576, 64KiB, 10GiB)", s)
	}
	return n * mult, nil
}

// unknownEnv lists the BRIDGEHEAD_* variables of env that set no flag of fs (nor a secret flag's
// _FILE): typos, or settings of a newer or older release.
func unknownEnv(fs *pflag.FlagSet, env []string) []string {
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		known[envName(f.Name)] = true
		if isSecret(f) {
			known[envName(f.Name)+"_FILE"] = true
		}
	})
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "BRIDGEHEAD_") && !known[name] {
			out = append(out, name)
		}
	}
	return out
}
