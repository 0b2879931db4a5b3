module sluice.dev/enrich-go

go 1.24
