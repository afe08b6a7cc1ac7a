package check

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Status is a rule's verdict.
type Status string

const (
	Pass Status = "pass" // the disk does what the target needs
	Fail Status = "fail" // the target will not boot it, or every instance would be wrong
	Warn Status = "warn" // it boots, but something the target offers will not work
	Skip Status = "skip" // the rule does not apply to this disk (another container format, no sshd, …)
)

// Result is one rule's verdict on one disk for one target.
type Result struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	// Fix is what to do, in one line; empty on pass and skip.
	Fix string `json:"fix,omitempty"`
	// Source is the documentation the rule follows (the cloud's own, where it has one).
	Source string `json:"source"`
}

// Summary counts the results by status.
type Summary struct {
	Pass int `json:"pass"`
	Fail int `json:"fail"`
	Warn int `json:"warn"`
	Skip int `json:"skip"`
}

// Report is the check of one disk for one target: `imgfab check --json` prints it, with Disk set
// by the command. The shape is stable (docs/CHECK.md).
type Report struct {
	Target  string   `json:"target"`
	Disk    string   `json:"disk,omitempty"`
	Rules   []Result `json:"rules"`
	Summary Summary  `json:"summary"`
}

// Failed reports whether any rule failed.
func (r Report) Failed() bool { return r.Summary.Fail > 0 }

// Failures are the failing results.
func (r Report) Failures() []Result {
	var out []Result
	for _, x := range r.Rules {
		if x.Status == Fail {
			out = append(out, x)
		}
	}
	return out
}

// Target is what one place machines boot from needs, as data: the rules read it. Each target is
// declared in its own file (aws.go, gcp.go, …) and registered there.
type Target struct {
	Name string
	// Archs are the CPUs the target's machines have: "x86-64", "arm64".
	Archs []string
	// Firmware lists the firmware the target starts machines with: "uefi", "bios".
	Firmware []string
	// Storage and Network are the drivers the target's disk and network devices need: each group
	// is satisfied by any one of its modules. Storage drivers must be in the initrd or built into
	// the kernel (the root is on that disk); network drivers may also be loadable modules on the
	// root filesystem. PreferNetwork, when set, is a network driver whose absence is a warning
	// even when the group is satisfied.
	Storage       [][]string
	Network       [][]string
	PreferNetwork string
	PreferWhy     string
	// Console is the status when the kernel command line lacks the console on the first serial
	// port ("": the target has no serial console to need it): ttyS0 (a 16550 UART) on x86-64,
	// ArmConsole on arm64 ("" means ttyAMA0, the PL011 of KVM's virt machine).
	Console    Status
	ArmConsole string
	// Agents are the metadata agents that deliver the target's SSH keys and user data, AgentStatus
	// the status when none is installed ("": the target needs none). Datasources are cloud-init's
	// names for the target's metadata source (any one suffices).
	Agents      []string
	AgentStatus Status
	Datasources []string
	// NameStatus is the status of a root= or fstab entry naming a disk by its kernel name
	// (/dev/sda2): Fail on clouds, whose disks are nvme0n1 on one machine type and sda on another.
	NameStatus Status
	// MaxSize is the largest disk the target takes, in bytes (0: no limit of its own); MaxSizeWhy
	// names the limit.
	MaxSize    int64
	MaxSizeWhy string
	// Formats are the container formats the target takes as they are (nil: the format rule does
	// not apply; the target's own rule or its push converts).
	Formats []string
	// Sources are the target's documentation per rule id, overriding the rule's own.
	Sources map[string]string
}

var targets = map[string]*Target{}

// register adds a target; each target's file calls it from init.
func register(t *Target) {
	if _, dup := targets[t.Name]; dup {
		panic("check: target " + t.Name + " registered twice")
	}
	targets[t.Name] = t
}

// Targets lists the target names, sorted.
func Targets() []string {
	var out []string
	for n := range targets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// rule is one check: its id, what it checks (one line, for docs), its default source, whether it
// applies to a target, and the check itself.
type rule struct {
	id      string
	title   string
	source  string
	applies func(t *Target) bool
	check   func(f *Facts, t *Target) verdict
}

// verdict is what a rule's check says; Check fills in the id and source.
type verdict struct {
	status  Status
	message string
	fix     string
}

func pass(format string, a ...any) verdict {
	return verdict{status: Pass, message: fmt.Sprintf(format, a...)}
}
func skip(format string, a ...any) verdict {
	return verdict{status: Skip, message: fmt.Sprintf(format, a...)}
}
func bad(s Status, msg, fix string) verdict { return verdict{status: s, message: msg, fix: fix} }

// RuleInfo describes a rule for documentation and tests.
type RuleInfo struct {
	ID      string
	Title   string
	Targets []string
	// Sources are the documentation per target.
	Sources map[string]string
}

// Rules describes every rule, in the order Check reports them.
func Rules() []RuleInfo {
	var out []RuleInfo
	for _, r := range rules {
		ri := RuleInfo{ID: r.id, Title: r.title, Sources: map[string]string{}}
		for _, n := range Targets() {
			t := targets[n]
			if r.applies(t) {
				ri.Targets = append(ri.Targets, n)
				ri.Sources[n] = sourceFor(r, t)
			}
		}
		out = append(out, ri)
	}
	return out
}

func sourceFor(r rule, t *Target) string {
	if s := t.Sources[r.id]; s != "" {
		return s
	}
	return r.source
}

// Check runs every rule that applies to target over f. An unknown target is an error naming the
// known ones.
func Check(ctx context.Context, f *Facts, target string) (Report, error) {
	t, ok := targets[target]
	if !ok {
		return Report{}, fmt.Errorf("check: unknown target %q (known: %s)", target, strings.Join(Targets(), ", "))
	}
	rep := Report{Target: target, Rules: []Result{}}
	for _, r := range rules {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if !r.applies(t) {
			continue
		}
		v := r.check(f, t)
		res := Result{ID: r.id, Status: v.status, Message: v.message, Fix: v.fix, Source: sourceFor(r, t)}
		if res.Status == Pass || res.Status == Skip {
			res.Fix = ""
		}
		rep.Rules = append(rep.Rules, res)
		switch res.Status {
		case Pass:
			rep.Summary.Pass++
		case Fail:
			rep.Summary.Fail++
		case Warn:
			rep.Summary.Warn++
		case Skip:
			rep.Summary.Skip++
		}
	}
	return rep, nil
}

// always applies a rule to every target.
func always(*Target) bool { return true }

// join lists names for a message: "a", "a or b", "a, b or c".
func join(names []string, word string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + word + " " + names[len(names)-1]
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
