
$7701e3c4-e550-561a-9247-7075ead9e70c˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1RK
partner-success69f56f49b-a219-5b63-8f7c-b1e3f51b071e/impl-csat-partner