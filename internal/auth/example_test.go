package auth_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/bridgehead-dev/bridgehead/internal/auth"
)

func Example() {
	// An operator runs `bridgehead auth new`, gives the key to the supplier and puts the hash
	// in the principals file. Here the key is fixed so the output is stable.
	key := "s3cret-example-key"
	ps, err := auth.Parse([]byte(`
principals:
  - name: supplier-a
    keySha256: ` + auth.HashKey(key) + `
    senders: ["01", "plant-a-*"]
`))
	if err != nil {
		fmt.Println(err)
		return
	}

	r := httptest.NewRequest("POST", "/api/messages", nil)
	r.Header.Set("Authorization", "Bearer "+key)
	presented, _ := auth.KeyFromRequest(r)
	p, ok := ps.ByKey(presented)
	fmt.Println(p, ok, p.Role)
	fmt.Println(p.MaySendAs("plant-a-7"), p.MaySendAs("plant-b-1"))
	// Output:
	// supplier-a true sender
	// true false
}

func ExampleParse_unknownField() {
	_, err := auth.Parse([]byte(`principals:
  - name: supplier-a
    key: not-a-field
`))
	fmt.Println(err)
	// Output:
	// principals file: yaml: unmarshal errors:
	//   line 3: field key not found in type auth.filePrincipal
}
