
$c736fac0-6ba8-59be-8949-bb264cc6f695˜ÉœÈ€”ï:req-1"dana.li@vendor.example*
crm-case-92req-1Z7
5
dana.li@vendor.exampleDana Lilee@vendor.example