
$e032275e-d338-5c25-86a0-650108ddba79˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1RY
$949789c8-ec81-59e5-9ada-15fffdc6c063event-1dana.li@vendor.example *owner_assigned