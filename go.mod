module github.com/proxyto/proxyto

go 1.26.0

require (
	github.com/alecthomas/kong v1.17.0
	go.uber.org/zap v1.28.0
	golang.org/x/crypto v0.58.0
)

require (
	github.com/stretchr/testify v1.10.0 // indirect
	go.uber.org/multierr v1.11.0 // indirect
)
