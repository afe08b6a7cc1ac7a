package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/imgfab/imgfab/assemble"
)

// platformResult is one line of `build --platform A,B --json`: the platform and its build's result.
type platformResult struct {
	Platform string `json:"platform"`
	assemble.Result
}

// splitPlatforms is --platform's list ("linux/amd64,linux/arm64"), each once.
func splitPlatforms(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" || strings.Count(p, "/") < 1 || strings.Count(p, "/") > 2 {
			return nil, usagef("--platform %q: want OS/ARCH[/VARIANT], separated by commas", s)
		}
		if seen[p] {
			return nil, usagef("--platform %q: %s is given twice", s, p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// platformPlans are plan once per platform, with {arch} (the platform's architecture) and
// {platform} ("linux-arm64") in the output paths: with several platforms every output path must
// hold {arch} or {platform}, so that no two builds write one file.
func platformPlans(plan assemble.Plan, platforms []string) ([]assemble.Plan, error) {
	var plans []assemble.Plan
	for _, pl := range platforms {
		p := plan
		p.Platform = pl
		p.Outputs = nil
		arch := strings.Split(pl, "/")[1]
		for _, o := range plan.Outputs {
			if o.Path == "-" {
				return nil, usagef("-o - (stdout) builds one platform, not %d", len(platforms))
			}
			if !strings.Contains(o.Path, "{arch}") && !strings.Contains(o.Path, "{platform}") {
				return nil, usagef("-o %s: with several platforms an output path needs {arch} (or {platform}), e.g. disk-{arch}.qcow2", o.Path)
			}
			o.Path = strings.NewReplacer("{arch}", arch, "{platform}", strings.ReplaceAll(pl, "/", "-")).Replace(o.Path)
			p.Outputs = append(p.Outputs, o)
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// buildPlatforms builds plans one after the other and reports each: a line per output, or with
// --json one JSON object per line, per platform.
func (f *buildFlags) buildPlatforms(ctx context.Context, plans []assemble.Plan, stdout, stderr io.Writer) error {
	if f.fl.Changed("push") || *f.target != "" {
		return usagef("--push and --target take one platform; build several with a class file (platforms:, publish:)")
	}
	for _, plan := range plans {
		prog := newProgress(stderr)
		plan.Progress = prog.event
		res, err := assemble.Run(ctx, plan)
		prog.done()
		if err != nil {
			return fmt.Errorf("%s: %w", plan.Platform, err)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "imgfab build: warning: %s: %s\n", plan.Platform, w)
		}
		if *f.asJSON {
			if err := json.NewEncoder(stdout).Encode(platformResult{plan.Platform, res}); err != nil {
				return err
			}
			continue
		}
		for _, o := range res.Outputs {
			fmt.Fprintf(stdout, "%s: %s: %s\n", plan.Platform, o.Path, outputLine(&res, o))
		}
	}
	return nil
}
