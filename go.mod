module llmq

go 1.26.8

require (
	golang.org/x/sys v0.49.0
	golang.org/x/text v0.44.0
)

require gopkg.in/yaml.v3 v3.0.1 // indirect
