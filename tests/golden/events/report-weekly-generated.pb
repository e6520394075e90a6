
$cffddd22-7a9c-58bd-b8bc-3dd550d99b81$1c00b17a-1076-59be-82c8-e0a1c5a36b7b˜ÉœÈ€”ï:"req-1*dana.li@vendor.example2
crm-case-9:req-1Rà
EMEA˜¾ÁÈsalesops-emea@vendor.example"¯
dana.li@vendor.example”
$949789c8-ec81-59e5-9ada-15fffdc6c063ACME-001"NPS detractor follow-up: Acme Corp"relationship-nps*˜ÉœÈ0:breached,escalatedJ˜ãºÉPZEMEA(