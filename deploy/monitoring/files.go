package monitoring

import "path/filepath"

// Files returns every generated file by its path relative to this package's directory: the rule
// file, the dashboard, the Azure Monitor rule group template (ARM), and the PrometheusRule in the
// kustomize base (where Flux, which fetches only deploy/kustomize, can read it).
func Files() (map[string][]byte, error) {
	rules, err := RuleFile(DefaultParams)
	if err != nil {
		return nil, err
	}
	pr, err := PrometheusRule()
	if err != nil {
		return nil, err
	}
	dash, err := Dashboard()
	if err != nil {
		return nil, err
	}
	azure, err := AzureRuleGroupTemplate()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"rules.yaml":      rules,
		"dashboard.json":  dash,
		AzureTemplateFile: azure,
		filepath.Join("..", "kustomize", "base", "prometheusrule.yaml"): pr,
	}, nil
}
