
$e032275e-d338-5c25-86a0-650108ddba79˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1R]
$949789c8-ec81-59e5-9ada-15fffdc6c063event-2kim@vendor.example *reassigned_fyi2ð¥¡È