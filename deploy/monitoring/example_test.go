package monitoring_test

import (
	"fmt"

	"github.com/bridgehead-dev/bridgehead/deploy/monitoring"
)

func ExampleAlerts() {
	for _, a := range monitoring.Alerts(monitoring.DefaultParams) {
		fmt.Printf("%s for %v: %s\n", a.Name, a.For, a.RunbookURL())
	}
	// Output:
	// BridgeheadSpoolNearlyFull for 5m0s: docs/runbook.md#bridgeheadspoolnearlyfull
	// BridgeheadOldestUndeliveredTooOld for 2m0s: docs/runbook.md#bridgeheadoldestundeliveredtooold
	// BridgeheadBreakerOpen for 5m0s: docs/runbook.md#bridgeheadbreakeropen
	// BridgeheadDeadLettersGrowing for 0s: docs/runbook.md#bridgeheaddeadlettersgrowing
	// BridgeheadBacklogNotDelivering for 5m0s: docs/runbook.md#bridgeheadbacklognotdelivering
	// BridgeheadHTTP503Ratio for 5m0s: docs/runbook.md#bridgeheadhttp503ratio
	// BridgeheadReadinessFlapping for 0s: docs/runbook.md#bridgeheadreadinessflapping
	// BridgeheadTLSCertificateExpiringSoon for 10m0s: docs/runbook.md#bridgeheadtlscertificateexpiringsoon
	// BridgeheadPrincipalsReloadFailing for 5m0s: docs/runbook.md#bridgeheadprincipalsreloadfailing
}
