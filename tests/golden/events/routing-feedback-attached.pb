
$9c6e1f93-7b65-59b8-81ca-e8327373bb13˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Z†
$9f56f49b-a219-5b63-8f7c-b1e3f51b071e$949789c8-ec81-59e5-9ada-15fffdc6c063"comment: "SSO is down too"*
commentSSO is down too