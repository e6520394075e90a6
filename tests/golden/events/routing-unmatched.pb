
$9c6e1f93-7b65-59b8-81ca-e8327373bb13˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Rn
$9f56f49b-a219-5b63-8f7c-b1e3f51b071eretired-programACME-0010:)program retired-program is not configured