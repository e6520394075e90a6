
$21b50731-5bcc-5a69-beee-7984d20c1962˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1bL
J
partner-successPartner successkim@vendor.exampleraj@vendor.example